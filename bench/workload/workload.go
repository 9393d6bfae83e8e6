// Package workload is the test workload of the side-by-side benchmark:
// packages p1…p16 of 25 tests each (the benchmark runs 4 or 16 of them); every test takes a database of its own
// cloned from a migrated template (ten tables) and a Redis database, writes
// and reads. BENCH_MODE picks how the services are provided:
//
//	cleanroom      cleanroom.Main: one pod for the whole run (cold, from a
//	               snapshot or kept warm, as CLEANROOM_* say)
//	per-test       cleanroom with singletons off: each test its own
//	               containers (ADR-002's "before")
//	floor          a Postgres and Redis started beforehand, outside the
//	               timing (BENCH_PG_URL, BENCH_REDIS_URL): the floor no
//	               container manager can beat
//	testcontainers testcontainers-go, one Postgres and one Redis per package
//	               (its TestMain pattern), over Podman's Docker API; with
//	               BENCH_TC_TMPFS=0 its module defaults (data on disk),
//	               otherwise Cleanroom's tuning (tmpfs, durability off)
package workload

import (
	"context"
	"embed"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations: ten tables with serial keys, indexes and foreign keys.
var Migrations = isolation.SQLDir(migrationFiles, "migrations")

// TestsPerPackage is how many tests each workload package has.
const TestsPerPackage = 25

// tc holds the package's services when they do not come from Cleanroom:
// testcontainers-go's, or the floor's.
var tc struct {
	pgURL     string
	redisOpts *redis.Options
}

// Main runs a workload package's tests in the mode BENCH_MODE names.
func Main(m *testing.M) {
	switch mode := os.Getenv("BENCH_MODE"); mode {
	case "cleanroom", "":
		cleanroom.Main(m, cleanroom.Postgres(), cleanroom.Redis())
	case "per-test":
		cfg, err := cleanroom.LoadConfig("")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		cfg.DisableSingletonContainers, cfg.DisableSnapshots = true, true
		env, err := cleanroom.New(context.Background(), cfg, cleanroom.Postgres(), cleanroom.Redis())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(env.Run(m))
	case "testcontainers":
		os.Exit(testcontainersMain(m))
	case "floor":
		os.Exit(floorMain(m))
	default:
		fmt.Fprintf(os.Stderr, "BENCH_MODE=%q: want cleanroom, per-test, floor or testcontainers\n", mode)
		os.Exit(2)
	}
}

// floorMain runs the tests against services that already run.
func floorMain(m *testing.M) int {
	tc.pgURL = os.Getenv("BENCH_PG_URL")
	opts, err := redis.ParseURL(os.Getenv("BENCH_REDIS_URL"))
	if err != nil || tc.pgURL == "" {
		fmt.Fprintln(os.Stderr, "BENCH_MODE=floor needs BENCH_PG_URL and BENCH_REDIS_URL:", err)
		return 2
	}
	tc.redisOpts = opts
	code := m.Run()
	isolate.CloseAll()
	return code
}

func testcontainersMain(m *testing.M) int {
	ctx := context.Background()
	opts := []testcontainers.ContainerCustomizer{
		tcpostgres.WithDatabase("bench"), tcpostgres.WithUsername("bench"), tcpostgres.WithPassword("bench"),
		tcpostgres.BasicWaitStrategies(),
	}
	if os.Getenv("BENCH_TC_TMPFS") != "0" {
		// The same test tuning Cleanroom gives its Postgres: data on tmpfs,
		// durability off.
		opts = append(opts,
			testcontainers.WithTmpfs(map[string]string{"/var/lib/postgresql/data": "rw,mode=1777"}),
			testcontainers.WithEnv(map[string]string{"PGDATA": "/var/lib/postgresql/data/pgdata"}),
			testcontainers.WithCmd("postgres", "-c", "fsync=off", "-c", "synchronous_commit=off",
				"-c", "full_page_writes=off", "-c", "max_connections=300"))
	}
	pg, err := tcpostgres.Run(ctx, os.Getenv("CLEANROOM_POSTGRES_IMAGE"), opts...)
	defer func() {
		if pg != nil {
			_ = pg.Terminate(context.Background())
		}
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testcontainers postgres:", err)
		return 1
	}
	rd, err := tcredis.Run(ctx, os.Getenv("CLEANROOM_REDIS_IMAGE"))
	defer func() {
		if rd != nil {
			_ = rd.Terminate(context.Background())
		}
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testcontainers redis:", err)
		return 1
	}
	if tc.pgURL, err = pg.ConnectionString(ctx, "sslmode=disable"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	url, err := rd.ConnectionString(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if tc.redisOpts, err = redis.ParseURL(url); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	isolate.CloseAll()
	return code
}

// Test is the body of every workload test.
func Test(t *testing.T, i int) {
	t.Parallel()
	var dbURL string
	var rdb *redis.Client
	if tc.pgURL != "" {
		dbURL = isolation.NewDatabase(t, tc.pgURL, Migrations).URL
		rdb = isolation.RedisDB(t, tc.redisOpts)
	} else {
		dbURL = cleanroom.NewDatabase(t, Migrations).URL
		rdb = cleanroom.RedisDB(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for j := range 10 {
		if _, err := pool.Exec(ctx, "INSERT INTO t01 (name) VALUES ($1)", fmt.Sprintf("row %d of test %d", j, i)); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM t01").Scan(&n); err != nil || n != 10 {
		t.Fatalf("t01 holds %d rows, %v; want this test's 10", n, err)
	}
	if err := rdb.Set(ctx, "k", i, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := rdb.Incr(ctx, "k").Result(); err != nil || v != int64(i)+1 {
		t.Fatalf("INCR k = %d, %v; want %d", v, err, i+1)
	}
}
