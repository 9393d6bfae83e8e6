// Package isolation_test checks pkg/isolation's per-test modes against the
// suite's real Postgres and Redis, started by cleanroom.Main: 50 parallel
// tests per mode write conflicting rows or keys and each sees only its own;
// afterwards nothing of theirs is left.
package isolation_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

const parallel = 50

var migrations = isolation.SQLDir(os.DirFS("testdata/migrations"), ".")

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	cleanroom.Main(m, cleanroom.Postgres(), cleanroom.Redis())
}

// adminPool is a pool on the server's own database, closed when t ends.
func adminPool(t *testing.T, pg *cleanroom.PostgresServer) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// count runs a counting query on the server.
func count(t *testing.T, pg *cleanroom.PostgresServer, query string, args ...any) int {
	t.Helper()
	var n int
	if err := adminPool(t, pg).QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// checkOwn inserts the row every parallel test fights over (id 1) and
// checks that the test sees its own row there and nobody else's.
func checkOwn(t *testing.T, q isolation.Querier) {
	t.Helper()
	ctx := context.Background()
	if _, err := q.Exec(ctx, "INSERT INTO items (id, owner) VALUES (1, $1)", t.Name()); err != nil {
		t.Fatalf("insert the contested row: %v", err)
	}
	rows, err := q.Query(ctx, "SELECT owner FROM items")
	if err != nil {
		t.Fatal(err)
	}
	owners, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(owners) != 1 || owners[0] != t.Name() {
		t.Errorf("items holds %v; want only this test's row", owners)
	}
}

func TestTransactionPerTest(t *testing.T) {
	pg := cleanroom.PostgresFor(t)
	ctx := context.Background()
	pool := adminPool(t, pg)
	if _, err := pool.Exec(ctx, "CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, owner text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Run("tests", func(t *testing.T) {
		for i := range parallel {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				checkOwn(t, cleanroom.Tx(t))
			})
		}
	})
	if n := count(t, pg, "SELECT count(*) FROM items"); n != 0 {
		t.Errorf("%d rows survived their transactions", n)
	}
	if _, err := pool.Exec(ctx, "DROP TABLE items"); err != nil {
		t.Fatal(err)
	}
}

func TestDatabaseSQLTransactionPerTest(t *testing.T) {
	db := cleanroom.NewDatabase(t, migrations).DB() // database/sql, pgx driver
	t.Run("tests", func(t *testing.T) {
		for i := range 10 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				tx := isolation.SQLTx(t, db)
				if _, err := tx.Exec("INSERT INTO items (id, owner) VALUES (1, $1)", t.Name()); err != nil {
					t.Fatal(err)
				}
				var owner string
				if err := tx.QueryRow("SELECT owner FROM items WHERE id = 1").Scan(&owner); err != nil || owner != t.Name() {
					t.Errorf("owner %q, %v", owner, err)
				}
			})
		}
	})
	var n int
	if err := db.QueryRow("SELECT count(*) FROM items").Scan(&n); err != nil || n != 0 {
		t.Errorf("%d rows survived, %v", n, err)
	}
}

func TestSchemaPerTest(t *testing.T) {
	pg := cleanroom.PostgresFor(t)
	// Other packages of the run share the server: count only this test's.
	const schemas = `SELECT count(*) FROM pg_namespace WHERE nspname LIKE 't\_testschemapertest\_%'`
	before := count(t, pg, schemas)
	t.Run("tests", func(t *testing.T) {
		for i := range parallel {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				sc := cleanroom.NewSchema(t, migrations)
				checkOwn(t, sc.Pool()) // "items" resolves to the test's schema
			})
		}
	})
	if after := count(t, pg, schemas); after != before {
		t.Errorf("%d test schemas before, %d after", before, after)
	}
}

func TestDatabasePerTest(t *testing.T) {
	pg := cleanroom.PostgresFor(t)
	var mu sync.Mutex
	var given []string // the databases the tests got (clones of the pool among them)
	t.Run("tests", func(t *testing.T) {
		for i := range parallel {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				db := cleanroom.NewDatabase(t, migrations)
				mu.Lock()
				given = append(given, db.Name)
				mu.Unlock()
				pool, err := pgxpool.New(context.Background(), db.URL)
				if err != nil {
					t.Fatal(err)
				}
				// Not closed on purpose: a leaked pool must not block the drop.
				_ = pool
				checkOwn(t, pool)
				var tables int
				if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil || tables != 11 {
					t.Errorf("the clone has %d tables, %v; want the template's 11", tables, err)
				}
			})
		}
	})
	isolate.FlushAll() // the drops happen in the background
	if n := count(t, pg, "SELECT count(*) FROM pg_database WHERE datname = ANY($1)", given); len(given) != parallel || n != 0 {
		t.Errorf("%d of the %d databases given to the tests survive them", n, len(given))
	}
	if n := count(t, pg, `SELECT count(*) FROM pg_database WHERE datname LIKE 'tpl\_%' AND datistemplate`); n < 1 {
		t.Errorf("no finished template")
	}
}

func TestRedisDatabasePerTest(t *testing.T) {
	rd := cleanroom.RedisFor(t)
	ctx := context.Background()
	t.Run("tests", func(t *testing.T) {
		for i := range parallel {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				c := cleanroom.RedisDB(t)
				if err := c.SetNX(ctx, "contested", t.Name(), 0).Err(); err != nil {
					t.Fatal(err)
				}
				if v, err := c.Get(ctx, "contested").Result(); err != nil || v != t.Name() {
					t.Errorf("contested = %q, %v; want this test's own", v, err)
				}
				if n, _ := c.DBSize(ctx).Result(); n != 1 {
					t.Errorf("the leased database holds %d keys, want 1", n)
				}
			})
		}
	})
	// Other packages of the run share the server: look for this test's.
	admin := redis.NewClient(rd.Options())
	defer admin.Close()
	keys, err := admin.Keys(ctx, isolate.LeaseKeyPrefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if owner, _ := admin.Get(ctx, k).Result(); strings.HasPrefix(owner, t.Name()) {
			t.Errorf("lease %s of %s left", k, owner)
		}
	}
	for db := 1; db < 64; db++ {
		c := redis.NewClient(&redis.Options{Addr: rd.Addr(), Password: rd.Password(), DB: db})
		v, err := c.Get(ctx, "contested").Result()
		c.Close()
		if err == nil && strings.HasPrefix(v, t.Name()) {
			t.Errorf("database %d still holds this test's key after the tests", db)
		}
	}
}

func TestRedisPrefixPerTest(t *testing.T) {
	rd := cleanroom.RedisFor(t)
	ctx := context.Background()
	shared := redis.NewClient(rd.Options())
	defer shared.Close()
	t.Run("tests", func(t *testing.T) {
		for i := range parallel {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				p := isolation.RedisPrefix(t, shared)
				for _, k := range []string{"contested", "a", "b"} {
					if err := shared.Set(ctx, p+k, t.Name(), 0).Err(); err != nil {
						t.Fatal(err)
					}
				}
				if v, _ := shared.Get(ctx, p+"contested").Result(); v != t.Name() {
					t.Errorf("contested = %q", v)
				}
			})
		}
	})
	if keys, err := shared.Keys(ctx, "t:testredisprefixpertest*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("prefixed keys left: %d, %v", len(keys), err)
	}
}

func TestTruncateWithExcludes(t *testing.T) {
	db := cleanroom.NewDatabase(t, migrations)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		"INSERT INTO t01 (name) VALUES ('a'), ('b')",
		"INSERT INTO t02 (name, parent_id) VALUES ('c', 1)",
		"INSERT INTO items VALUES (1, 'x')",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	tables, err := isolation.Truncate(ctx, conn, "items")
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != 10 || strings.Contains(strings.Join(tables, ","), "items") {
		t.Errorf("truncated %v; want the ten tables, not items", tables)
	}
	var t01, items, next int
	if err := conn.QueryRow(ctx, "SELECT (SELECT count(*) FROM t01), (SELECT count(*) FROM items)").Scan(&t01, &items); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "INSERT INTO t01 (name) VALUES ('again') RETURNING id").Scan(&next); err != nil {
		t.Fatal(err)
	}
	if t01 != 0 || items != 1 || next != 1 {
		t.Errorf("after Truncate: t01 %d rows, items %d rows, next id %d; want 0, 1, 1", t01, items, next)
	}
}

// Truncate, and so a suite-wide Reset, leaves the schemas of NewSchema
// alone: their tests may be running in other processes.
func TestTruncateLeavesTestSchemas(t *testing.T) {
	t.Parallel()
	db := cleanroom.NewDatabase(t, migrations)
	ctx := context.Background()
	s, err := isolate.Open(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sc, err := s.CreateSchema(ctx, t.Name(), migrations)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		"INSERT INTO public.t01 (name) VALUES ('shared')",
		"INSERT INTO " + pgx.Identifier{sc.Name, "t01"}.Sanitize() + " (name) VALUES ('a test''s')",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	tables, err := isolation.Truncate(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(tables, ","), sc.Name) {
		t.Errorf("truncated %v, tables of the test schema %s among them", tables, sc.Name)
	}
	var shared, mine int
	if err := conn.QueryRow(ctx, "SELECT (SELECT count(*) FROM public.t01), (SELECT count(*) FROM "+pgx.Identifier{sc.Name, "t01"}.Sanitize()+")").Scan(&shared, &mine); err != nil {
		t.Fatal(err)
	}
	if shared != 0 || mine != 1 {
		t.Errorf("after Truncate: public.t01 %d rows, %s.t01 %d rows; want 0 and 1", shared, sc.Name, mine)
	}
}
