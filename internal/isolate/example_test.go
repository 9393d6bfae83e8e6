package isolate_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
)

// ObjectName keeps the test's name readable in a database or schema name
// and makes it unique with 8 random hex digits.
func ExampleObjectName() {
	name := isolate.ObjectName("t_", "TestOrders/paid order (EUR)")
	i := strings.LastIndexByte(name, '_')
	fmt.Println(name[:i], len(name[i+1:]), len(name) <= 63) // the random part differs every time
	fmt.Println(name != isolate.ObjectName("t_", "TestOrders/paid order (EUR)"))
	// Output:
	// t_testorders_paid_order_eur 8 true
	// true
}

// Quote makes any string a safe SQL identifier.
func ExampleQuote() {
	fmt.Println(isolate.Quote("t_testorders_1a2b3c4d"))
	fmt.Println(isolate.Quote(`odd "name"`))
	// Output:
	// "t_testorders_1a2b3c4d"
	// "odd ""name"""
}

// Redact masks the password of a URL before it goes into a log.
func ExampleRedact() {
	fmt.Println(isolate.Redact("postgres://postgres:s3cret@127.0.0.1:5432/shop?sslmode=disable"))
	fmt.Println(isolate.Redact("postgres://127.0.0.1:5432/shop"))
	// Output:
	// postgres://postgres:xxxxx@127.0.0.1:5432/shop?sslmode=disable
	// postgres://127.0.0.1:5432/shop
}

// usersTable is a Migrator: its hash names the template database.
type usersTable struct{}

func (usersTable) Hash() (string, error) { return "users-v1", nil }

func (usersTable) Migrate(ctx context.Context, db *sql.DB) error {
	_, err := db.ExecContext(ctx, "CREATE TABLE users (id bigserial PRIMARY KEY, email text UNIQUE)")
	return err
}

// A Server makes per-test databases as clones of a template the migrations
// built once, and per-test schemas.
func ExampleServer_CreateDatabase() {
	ctx, cancel := context.WithTimeout(context.Background(), isolate.SetupTimeout)
	defer cancel()
	s, err := isolate.Open(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	db, err := s.CreateDatabase(ctx, "TestSignup", usersTable{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(db.Name, "cloned from", db.Template, "at", isolate.Redact(db.URL))
	s.DropDatabaseLater(db.Name) // Close waits for it

	sc, err := s.CreateSchema(ctx, "TestSignup", usersTable{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.DropSchema(ctx, sc.Name)
}

// LeaseDB leases a logical Redis database through the server itself, so
// that parallel test processes never share one.
func ExampleLeaseDB() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := isolate.LeaseDB(ctx, &redis.Options{Addr: "127.0.0.1:6379"}, "TestRateLimit")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Release(context.Background()) // flushes the database and gives it back
	if err := l.Client.Set(ctx, "hits", 1, 0).Err(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("database", l.DB, "lease held:", l.Err() == nil)
}
