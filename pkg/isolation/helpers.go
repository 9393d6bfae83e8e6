package isolation

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// TB is what the helpers need of *testing.T and *testing.B.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	Name() string
	Failed() bool
}

func setupContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), setupTimeout)
}

// NewDatabase gives test t a database of its own on the server at url,
// cloned from a template the migrations built once (see
// Server.CreateDatabase). It is dropped WITH (FORCE) when t ends — unless t
// failed: then it is kept and its URL logged, to look at what the test
// left. Safe for parallel tests.
func NewDatabase(t TB, url string, m Migrator) *Database {
	t.Helper()
	ctx, cancel := setupContext()
	defer cancel()
	s, err := serverFor(ctx, url)
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
			t.Logf("isolation: %s failed; kept its database %s for inspection, for as long as the Postgres container lives: %s  (then: DROP DATABASE %s WITH (FORCE))", t.Name(), redact(db.URL), psqlLine(db.Name, db.URL), quote(db.Name))
			return
		}
		// Dropped in the background (WITH (FORCE)); CloseAll waits for it.
		s.DropDatabaseLater(db.Name)
	})
	return db
}

// NewSchema gives test t a schema of its own on the server at url, with the
// migrations applied in it; Schema.URL connects with search_path set to it.
// The schema is dropped (CASCADE) when t ends, unless t failed (then it is
// kept and named in the log). Safe for parallel tests.
func NewSchema(t TB, url string, m Migrator) *Schema {
	t.Helper()
	ctx, cancel := setupContext()
	defer cancel()
	s, err := serverFor(ctx, url)
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
	return sc
}

// Beginner starts pgx transactions: *pgxpool.Pool and *pgx.Conn are ones.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// PgxTx begins a transaction for test t and rolls it back when t ends:
// the test sees its own writes and nothing survives it. It cannot isolate
// what commits on its own (code that opens its own transactions or
// connections), DDL run in other sessions, or sequences (nextval is not
// rolled back); concurrent tests writing the same unique key wait for one
// another. Safe for parallel tests with a pool.
func PgxTx(t TB, db Beginner) pgx.Tx {
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

// Tx is PgxTx for database/sql.
func Tx(t TB, db *sql.DB) *sql.Tx {
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

// Pool opens a connection pool on the database for t, closed when t ends.
func (d *Database) Pool(t TB) *pgxpool.Pool {
	t.Helper()
	return openPool(t, d.URL)
}

// DB opens a database/sql handle (pgx driver) on the database for t,
// closed when t ends.
func (d *Database) DB(t TB) *sql.DB {
	t.Helper()
	return openDB(t, d.URL)
}

// Pool opens a connection pool whose search_path is the schema, for t,
// closed when t ends.
func (s *Schema) Pool(t TB) *pgxpool.Pool {
	t.Helper()
	return openPool(t, s.URL)
}

// DB opens a database/sql handle (pgx driver) whose search_path is the
// schema, for t, closed when t ends.
func (s *Schema) DB(t TB) *sql.DB {
	t.Helper()
	return openDB(t, s.URL)
}

func openPool(t TB, url string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := setupContext()
	defer cancel()
	p, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatalf("isolation: open pool: %v", err)
		return nil
	}
	t.Cleanup(p.Close)
	return p
}

func openDB(t TB, url string) *sql.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatalf("isolation: open database: %v", err)
		return nil
	}
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { db.Close() })
	return db
}

// psqlLine is the command that opens a kept database or schema, without the
// password in it (test logs end up in CI logs): the URL, password and all,
// goes into a file of this user's (mode 0600), which the command reads.
func psqlLine(name, url string) string {
	path, err := keepURL(name, url)
	if err != nil {
		return fmt.Sprintf("psql '%s'  (its password is the suite's; the URL could not be written to a file: %v)", redact(url), err)
	}
	return fmt.Sprintf("psql \"$(cat %s)\"", path)
}

// keepURL writes url to kept/<name>.url in the user's cache directory.
func keepURL(name, url string) (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	dir = filepath.Join(dir, "cleanroom", "kept")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return "", err
	}
	_, err = f.WriteString(url + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	path := filepath.Join(dir, name+".url")
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return path, nil
}
