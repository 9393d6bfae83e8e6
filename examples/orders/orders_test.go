package orders_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cleanroom-go/cleanroom/examples/orders"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

func TestMain(m *testing.M) {
	cleanroom.Main(m, cleanroom.MariaDB(), cleanroom.NATS())
}

var migrations = isolation.MigrateFunc("orders-1", func(ctx context.Context, db *sql.DB) error {
	_, err := db.ExecContext(ctx, orders.Schema)
	return err
})

// service gives each test a MariaDB database of its own and a NATS subject
// prefix of its own: order IDs and subjects may be the same in every test.
func service(t *testing.T) (*orders.Service, *isolation.NATSPrefix) {
	t.Helper()
	db := cleanroom.NewMariaDBDatabase(t, migrations)
	p := cleanroom.NATSPrefix(t)
	return orders.New(db.DB(), p.Conn, p.Subject("orders.placed")), p
}

func TestPlaceStoresAndAnnounces(t *testing.T) {
	t.Parallel()
	s, p := service(t)
	sub, err := p.Conn.SubscribeSync(p.Subject("orders.placed"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	placed, err := s.Place(ctx, "ada@example.com", []orders.Line{{SKU: "tea", Quantity: 2, Price: 3.5}, {SKU: "cup", Quantity: 1, Price: 8}})
	if err != nil {
		t.Fatal(err)
	}
	// Every test has a database of its own: its first order is number 1.
	if placed.ID != 1 || placed.Total != 15 {
		t.Errorf("placed %+v; want order 1 of 15.00", placed)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no event: %v", err)
	}
	var ev orders.Placed
	if err := json.Unmarshal(msg.Data, &ev); err != nil || ev.ID != 1 || len(ev.Lines) != 2 {
		t.Errorf("event %s: %+v, %v", msg.Data, ev, err)
	}
	if total, err := s.Total(ctx, "ada@example.com"); err != nil || total != 15 {
		t.Errorf("total %v, %v; want 15", total, err)
	}
}

func TestAnOrderThatCannotBeStoredIsNotAnnounced(t *testing.T) {
	t.Parallel()
	s, p := service(t)
	sub, err := p.Conn.SubscribeSync(p.Subject("orders.placed"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := s.Place(ctx, "bob@example.com", nil); !errors.Is(err, orders.ErrEmpty) {
		t.Errorf("empty order: %v, want ErrEmpty", err)
	}
	// The CHECK on quantity refuses the line; the whole order is rolled back.
	if _, err := s.Place(ctx, "bob@example.com", []orders.Line{{SKU: "tea", Quantity: 0, Price: 1}}); err == nil {
		t.Error("a line of quantity 0 was stored")
	}
	if msg, err := sub.NextMsg(200 * time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
		t.Errorf("an event went out: %v %v", msg, err)
	}
	if total, err := s.Total(ctx, "bob@example.com"); err != nil || total != 0 {
		t.Errorf("total %v, %v; want nothing stored", total, err)
	}
}

// The billing side reads the events from a JetStream stream; the test's
// stream is named with its prefix and is deleted when the test ends.
func TestEventsLandInTheBillingStream(t *testing.T) {
	t.Parallel()
	s, p := service(t)
	ctx := t.Context()
	js, err := jetstream.New(p.Conn)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: p.Name("BILLING"), Subjects: []string{p.Subject("orders.>")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"ada@example.com", "grace@example.com"} {
		if _, err := s.Place(ctx, who, []orders.Line{{SKU: "tea", Quantity: 1, Price: 3.5}}); err != nil {
			t.Fatal(err)
		}
	}
	info, err := stream.Info(ctx)
	if err != nil || info.State.Msgs != 2 {
		t.Errorf("billing stream: %+v, %v; want 2 events", info, err)
	}
}
