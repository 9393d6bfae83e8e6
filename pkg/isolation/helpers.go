package isolation

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
)

// TB is what the helpers need of *testing.T and *testing.B.
type TB interface {
	Helper()                           // marks the caller as a test helper
	Fatalf(format string, args ...any) // logs and stops the test as failed
	Errorf(format string, args ...any) // logs and marks the test failed
	Logf(format string, args ...any)   // logs to the test's output
	Cleanup(func())                    // runs a function when the test ends
	Name() string                      // the test's name; database, schema and key names derive from it
	Failed() bool                      // whether the test failed: its database or schema is then kept
}

func setupContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), isolate.SetupTimeout)
}

// Database is a database of one test's own (NewDatabase). Its connections
// open on first use and close when the test ends; the database is dropped
// then, or kept when the test failed. Safe for use by the test's
// goroutines.
type Database struct {
	Name string // the database's name
	URL  string // a postgres:// URL of it, for pgx, lib/pq and psql
	conns
}

// Schema is a schema of one test's own (NewSchema). URL, and the
// connections, have search_path set to it, so unqualified names are the
// test's own. Connections open on first use and close when the test ends.
type Schema struct {
	Name string // the schema's name
	URL  string // a postgres:// URL whose sessions use the schema
	conns
}

// conns opens connections to url for test t on first use, closes them
// when t ends.
type conns struct {
	t        TB
	url      string
	poolOnce sync.Once
	pool     *pgxpool.Pool
	dbOnce   sync.Once
	db       *sql.DB
}

// Pool is a pgx connection pool on the test's database (or schema),
// opened on first use and closed when the test ends.
func (c *conns) Pool() *pgxpool.Pool {
	c.t.Helper()
	c.poolOnce.Do(func() {
		ctx, cancel := setupContext()
		defer cancel()
		p, err := pgxpool.New(ctx, c.url)
		if err != nil {
			c.t.Fatalf("isolation: open a pool on %s: %v", isolate.Redact(c.url), err)
			return
		}
		c.pool = p
		c.t.Cleanup(p.Close)
	})
	return c.pool
}

// DB is a database/sql handle (pgx driver) on the test's database (or
// schema), opened on first use and closed when the test ends.
func (c *conns) DB() *sql.DB {
	c.t.Helper()
	c.dbOnce.Do(func() {
		cfg, err := pgx.ParseConfig(c.url)
		if err != nil {
			c.t.Fatalf("isolation: open %s: %v", isolate.Redact(c.url), err)
			return
		}
		c.db = stdlib.OpenDB(*cfg)
		c.t.Cleanup(func() { c.db.Close() })
	})
	return c.db
}

// Conn is a new single connection to the test's database (or schema),
// closed when the test ends: for what needs one session (LISTEN, session
// settings). Each call opens another.
func (c *conns) Conn() *pgx.Conn {
	c.t.Helper()
	ctx, cancel := setupContext()
	defer cancel()
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		c.t.Fatalf("isolation: connect to %s: %v", isolate.Redact(c.url), err)
		return nil
	}
	c.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// NewDatabase gives test t a database of its own on the server at url,
// cloned from a template the migrations built once for the whole run
// (across all test processes, under a Postgres advisory lock), and returns
// its handle. The database is dropped when t ends, even with connections
// still open, unless t failed: then it is kept and the log says how to
// open it. Safe for parallel tests.
func NewDatabase(t TB, url string, m Migrator) *Database {
	t.Helper()
	ctx, cancel := setupContext()
	defer cancel()
	s, err := isolate.ServerFor(ctx, url)
	if err != nil {
		t.Fatalf("%v", err)
		return nil
	}
	db, err := s.CreateDatabase(ctx, t.Name(), m)
	if err != nil {
		t.Fatalf("%v", err)
		return nil
	}
	t.Cleanup(func() {
		if t.Failed() {
			ctx, cancel := setupContext()
			defer cancel()
			if err := s.KeepDatabase(ctx, db.Name); err != nil {
				t.Logf("%v", err)
			}
			t.Logf("isolation: %s failed; kept its database %s for inspection, for as long as the Postgres container lives: %s  (then: %s)", t.Name(), isolate.Redact(db.URL), psqlLine(db.Name, db.URL), s.DropHint(db.Name))
			return
		}
		// Dropped in the background; cleanroom.Main waits for it.
		s.DropDatabaseLater(db.Name)
	})
	return &Database{Name: db.Name, URL: db.URL, conns: conns{t: t, url: db.URL}}
}

// NewSchema gives test t a schema of its own on the server at url, with the
// migrations applied in it, and returns its handle. The schema is dropped
// (CASCADE) when t ends, unless t failed (then it is kept and the log says
// how to open it). Safe for parallel tests.
func NewSchema(t TB, url string, m Migrator) *Schema {
	t.Helper()
	ctx, cancel := setupContext()
	defer cancel()
	s, err := isolate.ServerFor(ctx, url)
	if err != nil {
		t.Fatalf("%v", err)
		return nil
	}
	sc, err := s.CreateSchema(ctx, t.Name(), m)
	if err != nil {
		t.Fatalf("%v", err)
		return nil
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("isolation: %s failed; kept schema %s for inspection: %s", t.Name(), sc.Name, psqlLine(sc.Name, sc.URL))
			return
		}
		ctx, cancel := setupContext()
		defer cancel()
		if err := s.DropSchema(ctx, sc.Name); err != nil {
			t.Errorf("%v", err)
		}
	})
	return &Schema{Name: sc.Name, URL: sc.URL, conns: conns{t: t, url: sc.URL}}
}

// Beginner starts pgx transactions: *pgxpool.Pool and *pgx.Conn are ones.
type Beginner interface {
	// Begin starts a transaction.
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Tx begins a pgx transaction for test t and rolls it back when t ends:
// the test sees its own writes and nothing survives it. It cannot isolate
// what commits on its own (code that opens its own transactions or
// connections), DDL run in other sessions, or sequences (nextval is not
// rolled back); concurrent tests writing the same unique key wait for one
// another. Safe for parallel tests with a pool.
func Tx(t TB, db Beginner) pgx.Tx {
	t.Helper()
	ctx, cancel := setupContext()
	defer cancel()
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatalf("isolation: begin: %v", err)
		return nil
	}
	t.Cleanup(func() {
		if err := tx.Rollback(context.Background()); err != nil && err != pgx.ErrTxClosed {
			t.Errorf("isolation: roll back: %v", err)
		}
	})
	return tx
}

// SQLTx is Tx for database/sql.
func SQLTx(t TB, db *sql.DB) *sql.Tx {
	t.Helper()
	// Not a deadline: database/sql rolls a transaction back when the
	// context it began with ends.
	tx, err := db.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatalf("isolation: begin: %v", err)
		return nil
	}
	t.Cleanup(func() {
		if err := tx.Rollback(); err != nil && err != sql.ErrTxDone {
			t.Errorf("isolation: roll back: %v", err)
		}
	})
	return tx
}

// Querier runs SQL: *pgx.Conn, *pgxpool.Pool and pgx.Tx are Queriers.
type Querier interface {
	// Query runs a statement that returns rows.
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	// Exec runs a statement and returns its command tag.
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Truncate empties every table of every user schema except those named in
// exclude ("table" or "schema.table"), restarting their identities, with
// CASCADE, and returns the tables it emptied: for sequential tests that
// share one database. The schemas of NewSchema are left alone: they belong
// to tests that may be running.
func Truncate(ctx context.Context, db Querier, exclude ...string) ([]string, error) {
	return isolate.Truncate(ctx, db, exclude...)
}

// RedisDB gives test t a logical database of its own on the server opts
// describe and returns a client on it. The database is leased through the
// server itself (a key with an expiry, renewed while held), so parallel
// test processes never share one, and a crashed holder's lease expires
// (after CLEANROOM_REDIS_LEASE_TTL seconds, 30 by default). When t ends
// the database is flushed and given back; a lease that was lost meanwhile
// fails t instead, and the database is not flushed. Database 0 holds the
// leases and is never given out. Safe for parallel tests.
func RedisDB(t TB, opts *redis.Options) *redis.Client {
	t.Helper()
	ctx, cancel := setupContext()
	defer cancel()
	l, err := isolate.LeaseDB(ctx, opts, t.Name())
	if err != nil {
		t.Fatalf("%v", err)
		return nil
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.Release(ctx); err != nil {
			t.Errorf("%v", err)
		}
	})
	return l.Client
}

// RedisPrefix gives test t a key prefix of its own, for servers where
// logical databases are not available (Redis Cluster, some managed
// services): every key the test writes must start with it. When t ends,
// every key with the prefix is deleted.
func RedisPrefix(t TB, c *redis.Client) string {
	t.Helper()
	prefix := "t:" + strings.TrimPrefix(isolate.ObjectName("", t.Name()), "_") + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := isolate.DeletePrefix(ctx, c, prefix); err != nil {
			t.Errorf("%v", err)
		}
	})
	return prefix
}

// psqlLine is the command that opens a kept database or schema, without the
// password in it (test logs end up in CI logs): the URL, password and all,
// goes into a file of this user's (mode 0600), which the command reads.
func psqlLine(name, url string) string {
	path, err := keepURL(name, url)
	if err != nil {
		return fmt.Sprintf("psql '%s'  (its password is the suite's; the URL could not be written to a file: %v)", isolate.Redact(url), err)
	}
	return fmt.Sprintf("psql \"$(cat %s)\"", path)
}

// keepURL writes url to kept/<name>.url in the user's cache directory.
func keepURL(name, url string) (string, error) { return keepFile(name+".url", url+"\n") }

// keepFile writes content to kept/<file> in the user's cache directory,
// readable by this user only.
func keepFile(file, content string) (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	dir = filepath.Join(dir, "cleanroom", "kept")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "."+file+".*")
	if err != nil {
		return "", err
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	path := filepath.Join(dir, file)
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return path, nil
}
