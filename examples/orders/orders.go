// Package orders is the example shop's order service (see examples/shop):
// each order is a row in MariaDB (with its lines), and once it is stored
// an "order placed" event goes out on NATS for the services that ship and
// bill. Its tests declare MariaDB and NATS, so they run in a pod of their
// own, beside the shop's Postgres and Redis pod:
//
//	func TestMain(m *testing.M) {
//		cleanroom.Main(m, cleanroom.MariaDB(), cleanroom.NATS())
//	}
package orders

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Schema creates the orders and order_lines tables (MariaDB).
const Schema = `
CREATE TABLE orders (
	id       BIGINT AUTO_INCREMENT PRIMARY KEY,
	customer VARCHAR(255) NOT NULL,
	total    DECIMAL(12, 2) NOT NULL,
	placed   TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
);
CREATE TABLE order_lines (
	order_id BIGINT NOT NULL,
	sku      VARCHAR(64) NOT NULL,
	quantity INT NOT NULL CHECK (quantity > 0),
	price    DECIMAL(12, 2) NOT NULL,
	PRIMARY KEY (order_id, sku),
	FOREIGN KEY (order_id) REFERENCES orders (id)
);`

// Line is one article of an order.
type Line struct {
	SKU      string  `json:"sku"`
	Quantity int     `json:"quantity"`
	Price    float64 `json:"price"`
}

// Placed is the event published when an order is stored.
type Placed struct {
	ID       int64   `json:"id"`
	Customer string  `json:"customer"`
	Total    float64 `json:"total"`
	Lines    []Line  `json:"lines"`
}

// ErrEmpty: an order needs at least one line.
var ErrEmpty = errors.New("orders: an order needs at least one line")

// Service stores orders and announces them.
type Service struct {
	db      *sql.DB
	nc      *nats.Conn
	subject string
}

// New returns a service that announces placed orders on subject.
func New(db *sql.DB, nc *nats.Conn, subject string) *Service {
	return &Service{db: db, nc: nc, subject: subject}
}

// Place stores an order and its lines in one transaction, then publishes
// a Placed event. An order that cannot be stored is not announced.
func (s *Service) Place(ctx context.Context, customer string, lines []Line) (Placed, error) {
	if len(lines) == 0 {
		return Placed{}, ErrEmpty
	}
	ev := Placed{Customer: customer, Lines: lines}
	for _, l := range lines {
		ev.Total += float64(l.Quantity) * l.Price
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Placed{}, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, "INSERT INTO orders (customer, total) VALUES (?, ?)", customer, ev.Total)
	if err != nil {
		return Placed{}, fmt.Errorf("place order: %w", err)
	}
	if ev.ID, err = res.LastInsertId(); err != nil {
		return Placed{}, err
	}
	for _, l := range lines {
		if _, err := tx.ExecContext(ctx, "INSERT INTO order_lines (order_id, sku, quantity, price) VALUES (?, ?, ?, ?)", ev.ID, l.SKU, l.Quantity, l.Price); err != nil {
			return Placed{}, fmt.Errorf("place order: line %s: %w", l.SKU, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return Placed{}, err
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return Placed{}, err
	}
	if err := s.nc.Publish(s.subject, b); err != nil {
		return ev, fmt.Errorf("order %d stored, not announced: %w", ev.ID, err)
	}
	// Flushed, so that a caller who returns knows the server has it.
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return ev, s.nc.FlushWithContext(fctx)
}

// Total is what a customer's orders came to.
func (s *Service) Total(ctx context.Context, customer string) (float64, error) {
	var total sql.NullFloat64
	err := s.db.QueryRowContext(ctx, "SELECT SUM(total) FROM orders WHERE customer = ?", customer).Scan(&total)
	return total.Float64, err
}
