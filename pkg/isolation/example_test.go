package isolation_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"testing"
	"testing/fstest"

	"github.com/redis/go-redis/v9"

	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

// SQLDir applies a directory of .sql files in name order; its hash, which
// keys the template database, changes with any file's content.
func ExampleSQLDir() {
	fsys := fstest.MapFS{
		"migrations/0001_users.sql":  {Data: []byte("CREATE TABLE users (id bigserial PRIMARY KEY, email text UNIQUE NOT NULL);")},
		"migrations/0002_orders.sql": {Data: []byte("CREATE TABLE orders (id bigserial PRIMARY KEY, user_id bigint REFERENCES users);")},
		"migrations/README.md":       {Data: []byte("not a migration")},
	}
	m := isolation.SQLDir(fsys, "migrations")
	before, _ := m.Hash()

	fsys["migrations/0002_orders.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE orders (id bigserial PRIMARY KEY);")}
	after, _ := m.Hash()
	fmt.Println(len(before), before == after)

	_, err := isolation.SQLDir(fsys, "empty").Hash()
	fmt.Println(err != nil)
	// Output:
	// 64 false
	// true
}

// MigrateFunc adapts a function; its version stands in for the hash, so
// change it whenever the function changes.
func ExampleMigrateFunc() {
	migrate := func(ctx context.Context, db *sql.DB) error {
		_, err := db.ExecContext(ctx, "CREATE TABLE users (id bigserial PRIMARY KEY, email text)")
		return err
	}
	v1, _ := isolation.MigrateFunc("2026-11-27.1", migrate).Hash()
	v1Again, _ := isolation.MigrateFunc("2026-11-27.1", migrate).Hash()
	v2, _ := isolation.MigrateFunc("2026-11-27.2", migrate).Hash()
	fmt.Println(v1 == v1Again, v1 == v2)

	_, err := isolation.MigrateFunc("", migrate).Hash()
	fmt.Println(err)
	// Output:
	// true false
	// isolation.MigrateFunc: give a version, it keys the template
}

// A database of the test's own, cloned from a template the migrations
// built once for the whole run, dropped when the test ends.
func ExampleNewDatabase() {
	migrations := isolation.SQLDir(os.DirFS("testdata"), "migrations")
	testOrders := func(t *testing.T) {
		t.Parallel()
		db := isolation.NewDatabase(t, os.Getenv("DATABASE_URL"), migrations)
		if _, err := db.Pool().Exec(t.Context(), "INSERT INTO users (email) VALUES ('a@example.com')"); err != nil {
			t.Fatal(err)
		}
	}
	_ = testOrders
}

// A schema of the test's own: its URL and connections use it as
// search_path, so unqualified names are the test's.
func ExampleNewSchema() {
	testOrders := func(t *testing.T) {
		t.Parallel()
		s := isolation.NewSchema(t, os.Getenv("DATABASE_URL"), isolation.NoMigrations)
		if _, err := s.DB().ExecContext(t.Context(), "CREATE TABLE scratch (n int)"); err != nil {
			t.Fatal(err)
		}
	}
	_ = testOrders
}

// A transaction rolled back when the test ends: the cheapest isolation,
// for tests that do all their work through it.
func ExampleTx() {
	testSignup := func(t *testing.T) {
		db := isolation.NewDatabase(t, os.Getenv("DATABASE_URL"), isolation.NoMigrations)
		tx := isolation.Tx(t, db.Pool())
		if _, err := tx.Exec(t.Context(), "CREATE TABLE users (email text)"); err != nil {
			t.Fatal(err)
		}
		// … the test sees its writes; nothing survives it
	}
	_ = testSignup
}

// Empty every table between sequential tests that share one database,
// keeping reference data.
func ExampleTruncate() {
	testReport := func(t *testing.T) {
		db := isolation.NewDatabase(t, os.Getenv("DATABASE_URL"), isolation.NoMigrations)
		emptied, err := isolation.Truncate(t.Context(), db.Pool(), "countries")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("emptied %v", emptied)
	}
	_ = testReport
}

// A logical Redis database of the test's own, flushed and given back when
// the test ends.
func ExampleRedisDB() {
	testRateLimit := func(t *testing.T) {
		t.Parallel()
		opts, err := redis.ParseURL(os.Getenv("REDIS_URL"))
		if err != nil {
			t.Fatal(err)
		}
		rdb := isolation.RedisDB(t, opts)
		if err := rdb.Set(t.Context(), "hits", 1, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	_ = testRateLimit
}

// A key prefix of the test's own, where logical databases are not
// available (Redis Cluster): its keys are deleted when the test ends.
func ExampleRedisPrefix() {
	testSessions := func(t *testing.T) {
		t.Parallel()
		opts, err := redis.ParseURL(os.Getenv("REDIS_URL"))
		if err != nil {
			t.Fatal(err)
		}
		rdb := redis.NewClient(opts)
		t.Cleanup(func() { rdb.Close() }) // registered first, so it runs after RedisPrefix's clean-up
		prefix := isolation.RedisPrefix(t, rdb)
		if err := rdb.Set(t.Context(), prefix+"session:42", "alice", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	_ = testSessions
}
