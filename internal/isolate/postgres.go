package isolate

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// Migrator brings an empty database (or schema) to the state tests
// expect; isolation.Migrator is the same interface, for users.
type Migrator interface {
	// Hash identifies the migration set: it names the template database,
	// which is rebuilt when the hash changes.
	Hash() (string, error)
	// Migrate applies the migrations through db.
	Migrate(ctx context.Context, db *sql.DB) error
}

// Server does the Postgres isolation work for one server: it keeps a small
// pool of admin connections (creating a connection costs a password
// exchange, ~5–10 ms) and remembers which templates are known to be built.
// Safe for concurrent use. Close it when done; the TB helpers keep one per
// URL for the life of the test process.
type Server struct {
	url     string
	pool    *pgxpool.Pool
	version int // server_version_num: 150004 for 15.4

	mu        sync.Mutex
	templates map[string]*templateState // by template name

	spares spareSet // ready clones of each template, and databases to drop
}

type templateState struct {
	mu     sync.Mutex
	ready  bool
	clones chan string   // spare clones, ready to hand out
	wake   chan struct{} // asks the filler for more
}

// Open connects to the server at url (a postgres:// URL; its database is
// used for administration, and per-test databases and schemas are made on
// the same server with the same credentials).
func Open(ctx context.Context, url string) (*Server, error) {
	n, err := spareCount()
	if err != nil {
		return nil, err
	}
	return OpenWithSpares(ctx, url, n)
}

// OpenWithSpares is Open with n spare clones per template (0: none).
func OpenWithSpares(ctx context.Context, url string, n int) (*Server, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("isolation: parse postgres URL: %w", err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("isolation: connect to postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("isolation: connect to postgres at %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	var version int
	if err := pool.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		pool.Close()
		return nil, fmt.Errorf("isolation: read the server's version: %w", err)
	}
	s := &Server{url: url, pool: pool, version: version, templates: map[string]*templateState{}}
	if err := s.spares.start(ctx, s, n); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close stops the spares, drops its unused clones and the databases
// waiting to be dropped, and closes the admin connections.
func (s *Server) Close() {
	s.spares.stop(s)
	s.pool.Close()
}

// lockDatabase is the database every advisory lock of this package is
// taken in (see pool.go). Every Postgres cluster has it: initdb creates it
// as the default database to connect to.
const lockDatabase = "postgres"

// connectLocks opens a session on lockDatabase, where this package's
// advisory locks live.
func (s *Server) connectLocks(ctx context.Context) (*pgx.Conn, error) {
	u, err := withDatabase(s.url, lockDatabase)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("connect to database %q, where the isolation locks are taken: %w", lockDatabase, err)
	}
	return conn, nil
}

// URL is the URL the Server was opened with.
func (s *Server) URL() string { return s.url }

// withDatabase returns url with its database replaced.
func withDatabase(raw, db string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("isolation: %q is not a postgres:// URL", Redact(raw))
	}
	u.Path = "/" + db
	return u.String(), nil
}

// withSearchPath returns url with every session's search_path set to schema.
func withSearchPath(raw, schema string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Redact is raw with its password masked.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

var nonIdent = regexp.MustCompile(`[^a-z0-9]+`)

// ObjectName makes a unique Postgres identifier (≤ 63 bytes) that still
// says which test it belongs to: prefix, the test name, random hex.
func ObjectName(prefix, test string) string {
	n := strings.Trim(nonIdent.ReplaceAllString(strings.ToLower(test), "_"), "_")
	if len(n) > 40 {
		n = n[:40]
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + n + "_" + hex.EncodeToString(b)
}

// Database is a database made for one test.
type Database struct {
	Name     string // the database's name
	URL      string // connection URL of the database
	Template string // the template it was cloned from
}

// CreateDatabase makes a database for one test: the migrations run once
// per distinct migration set into a template database — once across every
// process using this server, guarded by a Postgres advisory lock, marked
// finished only as its last step (a crash mid-build is rebuilt), rebuilt
// when the hash changes or CLEANROOM_REBUILD=1 — and the new database is a
// clone of it. test names the database (its name starts with "t_").
func (s *Server) CreateDatabase(ctx context.Context, test string, m Migrator) (*Database, error) {
	tpl, err := s.ensureTemplate(ctx, m)
	if err != nil {
		return nil, err
	}
	if name, ok := s.spares.take(s, tpl); ok {
		u, err := withDatabase(s.url, name)
		if err != nil {
			return nil, err
		}
		return &Database{Name: name, URL: u, Template: tpl}, nil
	}
	name := ObjectName("t_", test)
	if _, err := s.pool.Exec(ctx, cloneSQL(s.version, name, tpl)); err != nil {
		return nil, fmt.Errorf("isolation: create database %s from template %s: %w", name, tpl, err)
	}
	u, err := withDatabase(s.url, name)
	if err != nil {
		return nil, err
	}
	return &Database{Name: name, URL: u, Template: tpl}, nil
}

// DropDatabase drops a database; connections a test leaked cannot block
// it (see dropDatabase).
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	if err := dropDatabase(ctx, s.pool, s.version, name); err != nil {
		return fmt.Errorf("isolation: drop database %s: %w", name, err)
	}
	return nil
}

// Quote quotes an SQL identifier.
func Quote(ident string) string { return pgx.Identifier{ident}.Sanitize() }

// Schema is a schema made for one test.
type Schema struct {
	Name string // the schema's name
	// URL connects with search_path set to the schema, so unqualified
	// names are the test's own.
	URL string
}

// CreateSchema makes a uniquely named schema for one test and applies the
// migrations in it (search_path set to it).
func (s *Server) CreateSchema(ctx context.Context, test string, m Migrator) (*Schema, error) {
	name := ObjectName("t_", test)
	// The comment tells Truncate (and so a suite-wide Reset) that the
	// schema belongs to its test.
	if _, err := s.pool.Exec(ctx, "CREATE SCHEMA "+Quote(name)+"; COMMENT ON SCHEMA "+Quote(name)+" IS '"+testSchemaComment+"'"); err != nil {
		return nil, fmt.Errorf("isolation: create schema %s: %w", name, err)
	}
	u, err := withSearchPath(s.url, name)
	if err != nil {
		return nil, err
	}
	if err := s.migrateInSchema(ctx, name, m); err != nil {
		_ = s.DropSchema(context.WithoutCancel(ctx), name)
		return nil, fmt.Errorf("isolation: schema %s: migrate: %w", name, err)
	}
	return &Schema{Name: name, URL: u}, nil
}

// migrateInSchema runs m on one of the Server's connections with
// search_path set to schema (a new connection would cost a password
// exchange per test), and resets search_path before handing it back. The
// *sql.DB it gives m has exactly one connection.
func (s *Server) migrateInSchema(ctx context.Context, schema string, m Migrator) error {
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	if _, err := db.ExecContext(ctx, "SET search_path TO "+Quote(schema)); err != nil {
		return err
	}
	defer func() { _, _ = db.ExecContext(context.WithoutCancel(ctx), "RESET search_path") }()
	return m.Migrate(ctx, db)
}

// DropSchema drops a schema and everything in it (CASCADE).
func (s *Server) DropSchema(ctx context.Context, name string) error {
	if _, err := s.pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+Quote(name)+" CASCADE"); err != nil {
		return fmt.Errorf("isolation: drop schema %s: %w", name, err)
	}
	return nil
}

// Querier runs SQL: *pgx.Conn, *pgxpool.Pool and pgx.Tx are Queriers.
type Querier interface {
	// Query runs a statement that returns rows.
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	// Exec runs a statement and returns its command tag.
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// testSchemaComment marks the schemas CreateSchema makes.
const testSchemaComment = "cleanroom: the schema of one test"

// Truncate empties every table of every user schema except those named in
// exclude ("table" or "schema.table"), restarting their identities, with
// CASCADE. It returns the tables it emptied. The schemas of CreateSchema
// (NewSchema) are left alone: they belong to tests that may be running.
func Truncate(ctx context.Context, db Querier, exclude ...string) ([]string, error) {
	skip := map[string]bool{}
	for _, e := range exclude {
		skip[e] = true
	}
	rows, err := db.Query(ctx, `SELECT t.schemaname, t.tablename FROM pg_tables t
		JOIN pg_namespace n ON n.nspname = t.schemaname
		WHERE t.schemaname NOT IN ('pg_catalog', 'information_schema') AND t.schemaname NOT LIKE 'pg\_%'
		AND coalesce(obj_description(n.oid, 'pg_namespace'), '') <> $1`, testSchemaComment)
	if err != nil {
		return nil, fmt.Errorf("isolation: truncate: list tables: %w", err)
	}
	var tables []string
	for rows.Next() {
		var schema, table string
		if err := rows.Scan(&schema, &table); err != nil {
			rows.Close()
			return nil, err
		}
		if skip[table] || skip[schema+"."+table] {
			continue
		}
		tables = append(tables, pgx.Identifier{schema, table}.Sanitize())
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sort.Strings(tables)
	if len(tables) == 0 {
		return nil, nil
	}
	if _, err := db.Exec(ctx, "TRUNCATE "+strings.Join(tables, ", ")+" RESTART IDENTITY CASCADE"); err != nil {
		return nil, fmt.Errorf("isolation: truncate: %w", err)
	}
	return tables, nil
}

// servers caches one Server per URL for the TB helpers. No lock is held
// while a Server opens (a connection and a sweep, which can take a while
// on a loaded server): the first caller for a URL opens it, the others
// wait with their own contexts, and a failure is not kept (the next call
// tries again).
var (
	serversMu sync.Mutex
	servers   = map[string]*serverSlot{}
)

type serverSlot struct {
	done chan struct{}
	s    *Server
	err  error
}

// ServerFor returns the Server of url that the TB helpers share, opening
// it on first use.
func ServerFor(ctx context.Context, url string) (*Server, error) {
	serversMu.Lock()
	if slot, ok := servers[url]; ok {
		serversMu.Unlock()
		select {
		case <-slot.done:
			return slot.s, slot.err
		case <-ctx.Done():
			return nil, fmt.Errorf("isolation: wait for the connection to %s: %w", Redact(url), ctx.Err())
		}
	}
	slot := &serverSlot{done: make(chan struct{})}
	servers[url] = slot
	serversMu.Unlock()

	slot.s, slot.err = Open(ctx, url)
	serversMu.Lock()
	if slot.err != nil && servers[url] == slot {
		delete(servers, url)
	}
	close(slot.done)
	serversMu.Unlock()
	return slot.s, slot.err
}

// openServers returns the Servers the TB helpers opened, waiting for those
// being opened; with take, they are forgotten.
func openServers(take bool) []*Server {
	serversMu.Lock()
	slots := make([]*serverSlot, 0, len(servers))
	for _, slot := range servers {
		slots = append(slots, slot)
	}
	if take {
		servers = map[string]*serverSlot{}
	}
	serversMu.Unlock()
	var out []*Server
	for _, slot := range slots {
		<-slot.done
		if slot.err == nil {
			out = append(out, slot.s)
		}
	}
	return out
}

// SetupTimeout bounds a helper's work for one test.
const SetupTimeout = 2 * time.Minute
