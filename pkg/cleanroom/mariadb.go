package cleanroom

import (
	"context"
	"database/sql"

	"github.com/go-sql-driver/mysql"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

// DefaultMariaDBImage is the MariaDB service's image: the official one,
// pinned.
const DefaultMariaDBImage = "docker.io/library/mariadb:10.11.10"

const (
	mariadbPort     = 3306
	mariadbDatabase = "cleanroom"
	mariadbDataDir  = "/var/lib/mysql"
)

// defaultMariaDBFlags tune the server for tests: durability off (its data
// is on a tmpfs and lives as long as the container), no binary log, no
// reverse DNS lookup per connection, small redo log (less to write at
// initialisation and to copy from a snapshot), and every table in the
// system tablespace instead of a file of its own: a test's CREATE and DROP
// of its tables then create and delete no files (NewMariaDBDatabase of 2
// tables took 2.4–2.6 ms with it, 5.4–5.6 ms without, in one
// BenchmarkMariaDBIsolation run each). The tablespace does not shrink when
// tables are dropped; their pages are reused.
var defaultMariaDBFlags = []string{
	"--innodb-flush-log-at-trx-commit=0",
	"--innodb-doublewrite=0",
	"--sync-binlog=0",
	"--skip-log-bin",
	"--skip-name-resolve",
	"--innodb-log-file-size=16M",
	"--innodb-buffer-pool-size=128M",
	"--max-connections=300",
	"--innodb-file-per-table=0",
}

// MariaDB is a MariaDB service named "mariadb" (the image's contract is the
// official docker.io/library/mariadb's, so MySQL-compatible images with
// the same MARIADB_* variables work too), tuned for tests: data on tmpfs,
// durability off, no time-zone tables, a database "cleanroom", root's
// password random per suite. Snapshots are on: later cold starts skip the
// initialisation.
// Reset empties every table of the "cleanroom" database.
func MariaDB(opts ...Option) Service {
	s := Service{
		name:  "mariadb",
		kind:  "mariadb",
		image: DefaultMariaDBImage,
		ports: []uint16{mariadbPort},
		env: map[string]string{
			"MARIADB_DATABASE": mariadbDatabase,
			// The time-zone tables make the initialisation slower;
			// CONVERT_TZ with named zones needs them:
			// WithEnv("MARIADB_INITDB_SKIP_TZINFO", "") loads them.
			"MARIADB_INITDB_SKIP_TZINFO": "1",
		},
		tmpfs: map[string]string{mariadbDataDir: "rw,mode=1777"},
		ready: func(c *Container) healthcheck.Probe {
			return healthcheck.MariaDB(c.MariaDB().DSN())
		},
		reset:    resetMariaDB,
		snapshot: true,
		build: func(s *Service, secret string) {
			if s.env["MARIADB_ROOT_PASSWORD"] == "" {
				s.env["MARIADB_ROOT_PASSWORD"] = secret
			}
			if s.command == nil {
				s.command = append([]string{"mariadbd"}, defaultMariaDBFlags...)
			}
		},
	}
	for _, o := range opts {
		o(&s)
	}
	return s
}

// MariaDB views the container as a MariaDB server: for a container of the
// MariaDB service got with Environment.Get (MariaDBFor gives it to a
// test).
func (c *Container) MariaDB() *MariaDBServer { return &MariaDBServer{c: c} }

// MariaDBServer is the suite's MariaDB server: where it is and how to log
// in (as root). Share it between parallel tests; give each its own data
// with NewMariaDBDatabase or MariaDBTx.
type MariaDBServer struct{ c *Container }

// Container is the container behind the server.
func (m *MariaDBServer) Container() *Container { return m.c }

// Host is the address the server is published on.
func (m *MariaDBServer) Host() string { return m.c.Host() }

// Port is the host port of the server.
func (m *MariaDBServer) Port() uint16 { return m.c.Port(mariadbPort) }

// User is "root".
func (m *MariaDBServer) User() string { return "root" }

// Password is root's password, random per suite (MARIADB_ROOT_PASSWORD).
func (m *MariaDBServer) Password() string { return m.c.Env("MARIADB_ROOT_PASSWORD") }

// Database is the database created at start ("cleanroom" unless
// MARIADB_DATABASE is set).
func (m *MariaDBServer) Database() string { return m.c.Env("MARIADB_DATABASE") }

// DSN is a go-sql-driver/mysql DSN of Database, as root, with parseTime on:
// root:password@tcp(127.0.0.1:port)/cleanroom?parseTime=true.
func (m *MariaDBServer) DSN() string { return m.dsnOf(m.Database()) }

func (m *MariaDBServer) dsnOf(db string) string {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd = m.User(), m.Password()
	cfg.Net, cfg.Addr = "tcp", m.c.Addr(mariadbPort)
	cfg.DBName = db
	cfg.ParseTime = true
	return cfg.FormatDSN()
}

// sharedDB is a handle on Database shared by every test of this process
// (at most 10 connections), for MariaDBTx; closed with the environment.
func (m *MariaDBServer) sharedDB() (*sql.DB, error) {
	c := m.c
	c.sqlOnce.Do(func() {
		c.sqlDB, c.sqlErr = sql.Open("mysql", m.DSN())
		if c.sqlErr != nil {
			return
		}
		c.sqlDB.SetMaxOpenConns(10)
		if c.owner != nil {
			c.owner.onClose(func() { c.sqlDB.Close() })
		}
	})
	return c.sqlDB, c.sqlErr
}

// MariaDBFor returns the suite's MariaDB server for test t, starting it on
// first use, as PostgresFor.
func MariaDBFor(t TB) *MariaDBServer {
	t.Helper()
	return currentFor(t).use(t, "mariadb").MariaDB()
}

// NewMariaDBDatabase gives test t a database of its own on the suite's
// MariaDB, made from a template database that m built once for the whole
// run (see isolation.NewMariaDBDatabase: the tables and their rows are
// copied). Its DB handle needs nothing more. The database is dropped when
// t ends, or kept for inspection when t failed (the log says how to open
// it).
//
//	db := cleanroom.NewMariaDBDatabase(t, migrations)
//	_, err := db.DB().ExecContext(t.Context(), "INSERT INTO …")
func NewMariaDBDatabase(t TB, m isolation.Migrator) *isolation.MariaDBDatabase {
	t.Helper()
	return isolation.NewMariaDBDatabase(t, MariaDBFor(t).DSN(), m)
}

// MariaDBTx begins a transaction on the suite's MariaDB database for test
// t and rolls it back when t ends: the cheapest isolation, for code that
// takes a *sql.Tx (or the query methods it shares with *sql.DB). DDL
// commits on its own in MariaDB, so a test that creates tables needs
// NewMariaDBDatabase.
func MariaDBTx(t TB) *sql.Tx {
	t.Helper()
	db, err := MariaDBFor(t).sharedDB()
	if err != nil {
		t.Fatalf("cleanroom: connect to mariadb: %v", err)
		return nil
	}
	return isolation.SQLTx(t, db)
}

// resetMariaDB empties every table of the service's database (foreign key
// checks off for it); the tests' own databases are theirs.
func resetMariaDB(ctx context.Context, c *Container) error {
	m := c.MariaDB()
	s, err := isolate.MariaDBFor(ctx, m.DSN())
	if err != nil {
		return err
	}
	_, err = s.Truncate(ctx, m.Database())
	return err
}
