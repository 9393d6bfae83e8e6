package isolate

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/go-sql-driver/mysql"

	"github.com/cleanroom-go/cleanroom/internal/runid"
)

// MariaDB does the per-test database work for one MariaDB server: a small
// pool of admin connections and, per migration set, a template database
// and the plan for copying it. Safe for concurrent use.
//
// MariaDB has no CREATE DATABASE … TEMPLATE. A test's database is made
// from the template table by table: the template's own CREATE TABLE
// statement (SHOW CREATE TABLE: columns, keys, foreign keys, the
// AUTO_INCREMENT counter, engine and charset as they are), then its rows
// with INSERT … SELECT. A template that holds what that does not copy
// (views, triggers, routines, events, sequences, system-versioned
// tables) is not copied: each test's database runs the migrations
// instead, which is slower and as correct.
type MariaDB struct {
	cfg *mysql.Config // admin: the server's root, no default database
	db  *sql.DB

	mu        sync.Mutex
	templates map[string]*mariaTemplate
}

type mariaTemplate struct {
	mu    sync.Mutex
	ready bool
	plan  copyPlan
}

// copyPlan is how a test's database is made from a finished template.
type copyPlan struct {
	migrate bool          // run the migrations instead of copying
	why     string        // what the template holds that is not copied
	tables  []tableToCopy // in the template's order
}

type tableToCopy struct {
	name    string
	create  string // SHOW CREATE TABLE, with the name unqualified
	columns string // the stored columns, quoted and joined (not generated ones)
	rows    bool   // the template's table holds rows
}

var (
	mariaMu      sync.Mutex
	mariaServers = map[string]*MariaDB{}
)

// MariaDBFor returns the MariaDB helper for the server dsn names (the
// go-sql-driver/mysql form; a user who may create and drop databases, such
// as root), one per server for the life of the process.
func MariaDBFor(ctx context.Context, dsn string) (*MariaDB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("isolation: parse MariaDB DSN: %w", err)
	}
	key := cfg.User + "@" + cfg.Addr
	mariaMu.Lock()
	defer mariaMu.Unlock()
	if s := mariaServers[key]; s != nil {
		return s, nil
	}
	admin := cfg.Clone()
	admin.DBName = ""
	admin.MultiStatements = true
	admin.Logger = &mysql.NopLogger{}
	conn, err := mysql.NewConnector(admin)
	if err != nil {
		return nil, fmt.Errorf("isolation: MariaDB at %s: %w", cfg.Addr, err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(4)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("isolation: connect to MariaDB at %s as %s: %w", cfg.Addr, cfg.User, err)
	}
	s := &MariaDB{cfg: admin, db: db, templates: map[string]*mariaTemplate{}}
	mariaServers[key] = s
	return s, nil
}

// DSN is the DSN of database name on this server, as the admin user, with
// parseTime and multiStatements on (migrations run whole files).
func (s *MariaDB) DSN(name string) string {
	c := s.cfg.Clone()
	c.DBName = name
	c.ParseTime = true
	return c.FormatDSN()
}

// QuoteMariaDB quotes a MariaDB identifier.
func QuoteMariaDB(ident string) string { return "`" + strings.ReplaceAll(ident, "`", "``") + "`" }

// CreateDatabase makes a database for one test (named after test,
// starting with "t_"): a copy of the template that m built once across
// every process using the server (under a named lock, marked finished
// only as its last step, rebuilt when m's hash changes or with
// CLEANROOM_REBUILD=1), or, for a template that cannot be copied, a new
// database that m migrates.
func (s *MariaDB) CreateDatabase(ctx context.Context, test string, m Migrator) (name string, err error) {
	tpl, plan, err := s.ensureTemplate(ctx, m)
	if err != nil {
		return "", err
	}
	name = ObjectName("t_", test)
	if plan.migrate {
		if _, err := s.db.ExecContext(ctx, "CREATE DATABASE "+QuoteMariaDB(name)); err != nil {
			return "", fmt.Errorf("isolation: create database %s: %w", name, err)
		}
		if err := s.migrate(ctx, name, m); err != nil {
			_ = s.DropDatabase(context.WithoutCancel(ctx), name)
			return "", fmt.Errorf("isolation: database %s: migrate: %w", name, err)
		}
		return name, nil
	}
	if err := s.copyTemplate(ctx, tpl, name, plan); err != nil {
		_ = s.DropDatabase(context.WithoutCancel(ctx), name)
		return "", fmt.Errorf("isolation: create database %s from template %s: %w", name, tpl, err)
	}
	return name, nil
}

// copyTemplate makes database name with tpl's tables and rows, on one
// connection: the tables' own CREATE statements refer to each other
// (foreign keys) unqualified, so they run with name as the default
// database, and with foreign key checks off, in the template's order.
func (s *MariaDB) copyTemplate(ctx context.Context, tpl, name string, plan copyPlan) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "SET SESSION foreign_key_checks = 0; CREATE DATABASE %s; USE %s;\n", QuoteMariaDB(name), QuoteMariaDB(name))
	for _, t := range plan.tables {
		b.WriteString(t.create)
		b.WriteString(";\n")
	}
	for _, t := range plan.tables {
		if t.rows {
			fmt.Fprintf(&b, "INSERT INTO %s (%s) SELECT %s FROM %s.%s;\n", QuoteMariaDB(t.name), t.columns, t.columns, QuoteMariaDB(tpl), QuoteMariaDB(t.name))
		}
	}
	// The connection goes back to the pool: leave it as it was found, and
	// out of the test's database (whose drop ends the sessions in it).
	b.WriteString("SET SESSION foreign_key_checks = 1; USE information_schema")
	_, err = conn.ExecContext(ctx, b.String())
	if err != nil {
		// A failed statement ends the batch: the session may still have
		// the test's database as its default and checks off.
		discard(conn)
	}
	return err
}

// discard makes database/sql close conn instead of pooling it again: for a
// session whose state (default database, checks, a named lock) is unknown
// or must end.
func discard(conn *sql.Conn) { _ = conn.Raw(func(any) error { return driver.ErrBadConn }) }

// DropDatabase drops a test's database, ending the sessions that still use
// it first (a DROP waits for their metadata locks otherwise).
func (s *MariaDB) DropDatabase(ctx context.Context, name string) error {
	// (A failed look-up leaves the DROP to wait, bounded by ctx.)
	ids, _ := s.queryStrings(ctx, "SELECT CAST(ID AS CHAR) FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()", name)
	for _, id := range ids {
		_, _ = s.db.ExecContext(ctx, "KILL CONNECTION "+id) // gone meanwhile: fine
	}
	if _, err := s.db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+QuoteMariaDB(name)); err != nil {
		return fmt.Errorf("isolation: drop database %s: %w", name, err)
	}
	return nil
}

// DropHint is the statement that drops a kept database by hand.
func (s *MariaDB) DropHint(name string) string {
	return "DROP DATABASE " + QuoteMariaDB(name)
}

// mariaStamp marks a finished template in its database comment: the run
// that built it (CLEANROOM_REBUILD=1 rebuilds once per run).
const mariaStamp = "cleanroom template built in run "

func (s *MariaDB) ensureTemplate(ctx context.Context, m Migrator) (string, copyPlan, error) {
	tpl, err := templateName(m)
	if err != nil {
		return "", copyPlan{}, err
	}
	s.mu.Lock()
	st := s.templates[tpl]
	if st == nil {
		st = &mariaTemplate{}
		s.templates[tpl] = st
	}
	s.mu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ready {
		return tpl, st.plan, nil
	}
	if err := s.buildTemplate(ctx, tpl, m, rebuildRequested()); err != nil {
		return "", copyPlan{}, err
	}
	plan, err := s.planCopy(ctx, tpl)
	if err != nil {
		return "", copyPlan{}, fmt.Errorf("isolation: template %s: %w", tpl, err)
	}
	st.plan, st.ready = plan, true
	return tpl, plan, nil
}

// buildTemplate builds database tpl with m under a named lock, unless
// another process finished it already.
func (s *MariaDB) buildTemplate(ctx context.Context, tpl string, m Migrator, rebuild bool) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("isolation: template %s: %w", tpl, err)
	}
	// Closing the session releases the lock, also when the build fails.
	defer func() {
		discard(conn)
		conn.Close()
	}()
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", "cleanroom template "+tpl, int(SetupTimeout.Seconds())).Scan(&got); err != nil {
		return fmt.Errorf("isolation: template %s: lock: %w", tpl, err)
	}
	if !got.Valid || got.Int64 != 1 {
		return fmt.Errorf("isolation: template %s: another process held its lock for %s", tpl, SetupTimeout)
	}
	stamp := mariaStamp + runid.ID()
	var comment string
	err = conn.QueryRowContext(ctx, "SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", tpl).Scan(&comment)
	exists := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("isolation: template %s: %w", tpl, err)
	}
	finished := strings.HasPrefix(comment, mariaStamp)
	if finished && (!rebuild || comment == stamp) {
		return nil
	}
	if exists { // unfinished (a crashed build) or a rebuild
		if err := s.DropDatabase(ctx, tpl); err != nil {
			return fmt.Errorf("isolation: template %s: drop the old one: %w", tpl, err)
		}
	}
	if _, err := conn.ExecContext(ctx, "CREATE DATABASE "+QuoteMariaDB(tpl)); err != nil {
		return fmt.Errorf("isolation: template %s: create: %w", tpl, err)
	}
	if err := s.migrate(ctx, tpl, m); err != nil {
		return fmt.Errorf("isolation: template %s: migrate: %w", tpl, err)
	}
	if _, err := conn.ExecContext(ctx, "ALTER DATABASE "+QuoteMariaDB(tpl)+" COMMENT = "+quoteLiteral(stamp)); err != nil {
		return fmt.Errorf("isolation: template %s: mark finished: %w", tpl, err)
	}
	return nil
}

// migrate runs m on database name through a handle of its own.
func (s *MariaDB) migrate(ctx context.Context, name string, m Migrator) error {
	c := s.cfg.Clone()
	c.DBName = name
	conn, err := mysql.NewConnector(c)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	return m.Migrate(ctx, db)
}

// queryStrings runs a query of one text column and returns its rows.
func (s *MariaDB) queryStrings(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// planCopy reads how to copy the finished template tpl.
func (s *MariaDB) planCopy(ctx context.Context, tpl string) (copyPlan, error) {
	var kinds []string
	for _, q := range []struct{ what, query string }{
		{"views, sequences or system-versioned tables", "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE <> 'BASE TABLE'"},
		{"triggers", "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?"},
		{"routines", "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?"},
		{"events", "SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?"},
	} {
		var n int
		if err := s.db.QueryRowContext(ctx, q.query, tpl).Scan(&n); err != nil {
			return copyPlan{}, err
		}
		if n > 0 {
			kinds = append(kinds, q.what)
		}
	}
	if len(kinds) > 0 {
		return copyPlan{migrate: true, why: strings.Join(kinds, ", ")}, nil
	}
	names, err := s.queryStrings(ctx, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME", tpl)
	if err != nil {
		return copyPlan{}, err
	}
	var plan copyPlan
	for _, n := range names {
		t := tableToCopy{name: n}
		var ignored string
		if err := s.db.QueryRowContext(ctx, "SHOW CREATE TABLE "+QuoteMariaDB(tpl)+"."+QuoteMariaDB(n)).Scan(&ignored, &t.create); err != nil {
			return copyPlan{}, err
		}
		cols, err := s.queryStrings(ctx, "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND IS_GENERATED = 'NEVER' ORDER BY ORDINAL_POSITION", tpl, n)
		if err != nil {
			return copyPlan{}, err
		}
		for i, c := range cols {
			cols[i] = QuoteMariaDB(c)
		}
		t.columns = strings.Join(cols, ", ")
		var one int
		switch err := s.db.QueryRowContext(ctx, "SELECT 1 FROM "+QuoteMariaDB(tpl)+"."+QuoteMariaDB(n)+" LIMIT 1").Scan(&one); {
		case err == nil:
			t.rows = true
		case !errors.Is(err, sql.ErrNoRows):
			return copyPlan{}, err
		}
		plan.tables = append(plan.tables, t)
	}
	return plan, nil
}

// Truncate empties every table of database name (foreign key checks
// off for it), for a suite-wide Reset.
func (s *MariaDB) Truncate(ctx context.Context, name string) ([]string, error) {
	tables, err := s.queryStrings(ctx, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME", name)
	if err != nil || len(tables) == 0 {
		return nil, err
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var b strings.Builder
	b.WriteString("SET SESSION foreign_key_checks = 0;")
	for _, t := range tables {
		fmt.Fprintf(&b, " TRUNCATE TABLE %s.%s;", QuoteMariaDB(name), QuoteMariaDB(t))
	}
	b.WriteString(" SET SESSION foreign_key_checks = 1")
	if _, err := conn.ExecContext(ctx, b.String()); err != nil {
		discard(conn)
		return nil, err
	}
	return tables, nil
}
