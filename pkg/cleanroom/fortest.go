package cleanroom

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

// The per-test helpers: one line per test, on the environment that Main (or
// Environment.Run) is running the tests with. Each calls t.Helper, fails t
// with Fatalf, and cleans up with t.Cleanup. All are safe for parallel
// tests.

func currentFor(t TB) *Environment {
	t.Helper()
	currentMu.Lock()
	env := current
	currentMu.Unlock()
	if env == nil {
		t.Fatalf("cleanroom: no environment: call cleanroom.Main(m, …) from TestMain (or os.Exit(env.Run(m)) with an environment of your own)")
	}
	return env
}

// PostgresFor returns the suite's PostgreSQL server for test t, starting
// it on first use. Parallel tests share the server; the container is not
// replaced while t runs.
func PostgresFor(t TB) *PostgresServer {
	t.Helper()
	return currentFor(t).use(t, "postgres").Postgres()
}

// RedisFor returns the suite's Redis server for test t, as PostgresFor.
func RedisFor(t TB) *RedisServer {
	t.Helper()
	return currentFor(t).use(t, "redis").Redis()
}

// ContainerFor returns the container of the suite's service name for test
// t, as PostgresFor.
func ContainerFor(t TB, name string) *Container {
	t.Helper()
	return currentFor(t).use(t, name)
}

// NewDatabase gives test t a database of its own on the suite's Postgres,
// cloned from a template that m built once for the whole run (across all
// test processes), usually a spare clone made in advance. Its handle's
// URL, Pool, DB and Conn need nothing more; connections open on first use
// and close with t. The database is dropped when t ends, or kept for
// inspection when t failed (the log says how to open it).
//
//	db := cleanroom.NewDatabase(t, migrations)
//	rows, err := db.Pool().Query(t.Context(), "SELECT …")
func NewDatabase(t TB, m isolation.Migrator) *isolation.Database {
	t.Helper()
	return isolation.NewDatabase(t, PostgresFor(t).URL(), m)
}

// NewSchema gives test t a schema of its own in the suite's Postgres
// database, with m applied in it; its handle's URL and connections set
// search_path to it. Dropped when t ends, kept when t failed.
func NewSchema(t TB, m isolation.Migrator) *isolation.Schema {
	t.Helper()
	return isolation.NewSchema(t, PostgresFor(t).URL(), m)
}

// Tx begins a transaction on the suite's Postgres database for test t and
// rolls it back when t ends: sub-millisecond isolation for code that takes
// a pgx.Tx or the pgx query interface (see isolation.Tx for its limits).
func Tx(t TB) pgx.Tx {
	t.Helper()
	pool, err := PostgresFor(t).sharedPool()
	if err != nil {
		t.Fatalf("cleanroom: connect to postgres: %v", err)
		return nil
	}
	return isolation.Tx(t, pool)
}

// RedisDB gives test t a logical database of its own on the suite's Redis
// and returns a client on it; the database is flushed and given back when
// t ends (see isolation.RedisDB). The Redis service has 64 databases.
func RedisDB(t TB) *redis.Client {
	t.Helper()
	return isolation.RedisDB(t, RedisFor(t).Options())
}

// use returns service name's container for test t: the suite's singleton,
// attached until t ends (it is not replaced meanwhile). With singletons
// disabled, t gets a container in a pod of its own, removed when t ends.
// When the singleton cannot be created, so does t, and the tests after it
// until the singleton is tried again (after 10 s, then twice as long each
// time, up to 2 min); the first fallback and the singleton's return are
// printed on stderr. Failures end t with Fatalf.
func (e *Environment) use(t TB, name string) *Container {
	t.Helper()
	ctx := context.Background()
	ent, err := e.lookup(ctx, name, nil)
	if err != nil {
		t.Fatalf("%v", err)
		return nil
	}
	ent.mu.Lock()
	fallback, broken := ent.fallback, ent.broken
	retry := !e.cfg.DisableSingletonContainers && (fallback == nil || (!ent.retrying && !time.Now().Before(ent.retryAt)))
	if fallback != nil && retry {
		ent.retrying = true // one test tries the singleton again; the others go on alone
	}
	ent.mu.Unlock()
	if broken != nil {
		t.Fatalf("cleanroom: %s is not available (it failed earlier in this run): %v", name, broken)
		return nil
	}
	if retry {
		began := time.Now()
		c, err := e.acquire(ctx, ent, true, false)
		ent.mu.Lock()
		ent.retrying = false
		if err == nil {
			if ent.fallback != nil {
				ent.fallback, ent.backoff = nil, 0
				notice("%s: the shared container is up again; tests share it from now on", name)
			}
			ent.mu.Unlock()
			e.noteReady(name, time.Since(began))
			t.Cleanup(func() { e.release(ent, c) })
			return c
		}
		if e.isClosed() {
			ent.mu.Unlock()
			t.Fatalf("%v", err)
			return nil
		}
		if ent.fallback == nil {
			ent.backoff = fallbackBackoff
			e.log.Warn("cleanroom: singleton could not be created; falling back to per-test containers", "service", name, "error", err)
			notice("%s: the shared container could not be started, so tests get containers of their own (slower) until it can; trying it again in %s: %v", name, ent.backoff, err)
		} else {
			ent.backoff = min(2*ent.backoff, maxFallbackBackoff)
		}
		ent.fallback, ent.retryAt = err, time.Now().Add(ent.backoff)
		fallback = err
		ent.mu.Unlock()
		t.Logf("cleanroom: %s: the shared container could not be created, so this test gets its own: %v", name, err)
	}
	c, remove, err := e.perTestContainer(ctx, ent.svc)
	if err != nil {
		if fallback != nil {
			if fallback.Error() == err.Error() {
				err = fmt.Errorf("%w\n(the per-test fallback failed the same way)", err)
			} else {
				err = fmt.Errorf("shared container: %v\nper-test fallback: %w", fallback, err)
			}
			ent.mu.Lock()
			ent.broken = err
			ent.mu.Unlock()
		}
		t.Fatalf("cleanroom: %v", err)
		return nil
	}
	t.Cleanup(func() {
		if err := remove(); err != nil {
			t.Errorf("cleanroom: remove the per-test pod of %s: %v", name, err)
		}
	})
	return c
}

// How long tests run on per-test containers before the singleton is tried
// again: fallbackBackoff after the first failure, twice as long after each
// further one, at most maxFallbackBackoff.
var (
	fallbackBackoff    = 10 * time.Second
	maxFallbackBackoff = 2 * time.Minute
)
