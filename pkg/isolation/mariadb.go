package isolation

import (
	"database/sql"
	"fmt"
	"net"
	"sync"

	"github.com/go-sql-driver/mysql"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
)

// MariaDBDatabase is a MariaDB (or MySQL) database of one test's own
// (NewMariaDBDatabase). Its handle opens on first use and closes when the
// test ends; the database is dropped then, or kept when the test failed.
type MariaDBDatabase struct {
	Name string // the database's name
	DSN  string // a go-sql-driver/mysql DSN of it (parseTime and multiStatements on)

	t      TB
	dbOnce sync.Once
	db     *sql.DB
}

// DB is a database/sql handle (go-sql-driver/mysql) on the test's
// database, opened on first use and closed when the test ends.
func (d *MariaDBDatabase) DB() *sql.DB {
	d.t.Helper()
	d.dbOnce.Do(func() {
		db, err := sql.Open("mysql", d.DSN)
		if err != nil {
			d.t.Fatalf("isolation: open database %s: %v", d.Name, err)
			return
		}
		d.db = db
		d.t.Cleanup(func() { d.db.Close() })
	})
	return d.db
}

// NewMariaDBDatabase gives test t a MariaDB database of its own on the
// server at dsn (go-sql-driver/mysql form; a user who may create
// databases, such as root), made from a template database that m built
// once for the whole run (across all test processes, under a named lock).
// MariaDB has no CREATE DATABASE … TEMPLATE, so the tables are copied:
// each table's own CREATE TABLE statement, then its rows. A template with
// views, triggers, routines, events, sequences or system-versioned tables
// is not copied; m then runs for each test's database instead (slower,
// as correct). The database is dropped when t ends, after its remaining
// sessions are ended, unless t failed: then it is kept and the log says
// how to open it. Safe for parallel tests.
func NewMariaDBDatabase(t TB, dsn string, m Migrator) *MariaDBDatabase {
	t.Helper()
	ctx, cancel := setupContext()
	defer cancel()
	s, err := isolate.MariaDBFor(ctx, dsn)
	if err != nil {
		t.Fatalf("%v", err)
		return nil
	}
	name, err := s.CreateDatabase(ctx, t.Name(), m)
	if err != nil {
		t.Fatalf("%v", err)
		return nil
	}
	d := &MariaDBDatabase{Name: name, DSN: s.DSN(name), t: t}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("isolation: %s failed; kept its database %s for inspection, for as long as the MariaDB container lives: %s  (then: %s)", t.Name(), name, mariadbLine(name, d.DSN), s.DropHint(name))
			return
		}
		ctx, cancel := setupContext()
		defer cancel()
		if err := s.DropDatabase(ctx, name); err != nil {
			t.Errorf("%v", err)
		}
	})
	return d
}

// mariadbLine is the command that opens a kept database, without the
// password in it: the client settings go into a file of this user's (mode
// 0600), which the command reads.
func mariadbLine(name, dsn string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return fmt.Sprintf("(the DSN could not be read: %v)", err)
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return fmt.Sprintf("(the DSN's address %q could not be read: %v)", cfg.Addr, err)
	}
	content := fmt.Sprintf("[client]\nhost=%s\nport=%s\nuser=%s\npassword=%s\ndatabase=%s\n", host, port, cfg.User, cfg.Passwd, name)
	path, err := keepFile(name+".cnf", content)
	if err != nil {
		return fmt.Sprintf("mariadb -h %s -P %s -u %s -p %s  (its password is the suite's; the settings could not be written to a file: %v)", host, port, cfg.User, name, err)
	}
	return fmt.Sprintf("mariadb --defaults-extra-file=%s", path)
}
