// Package singleton is a test package as a user writes one: cleanroom.Main
// in TestMain and 50 parallel tests that share the suite's Postgres and
// Redis. It checks, from the engine's side, that exactly one container per
// service served them all.
package singleton

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// env is the package's environment: a custom TestMain, so that the test can
// read its statistics.
var env *cleanroom.Environment

func TestMain(m *testing.M) {
	// The images come from CLEANROOM_POSTGRES_IMAGE / CLEANROOM_REDIS_IMAGE
	// (set by the Makefile to the locally built ones).
	cfg, err := cleanroom.LoadConfig("")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	env, err = cleanroom.New(context.Background(), cfg, cleanroom.Postgres(), cleanroom.Redis())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(env.Run(m))
}

const parallel = 50

func TestFiftyParallelTestsShareOneContainerPerService(t *testing.T) {
	t.Run("tests", func(t *testing.T) {
		for i := range parallel {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				pg := cleanroom.PostgresFor(t)
				conn, err := pgx.Connect(ctx, pg.URL())
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(ctx)
				// Each test works in its own table: isolation by naming here;
				// pkg/isolation gives real per-test databases.
				table := pgx.Identifier{fmt.Sprintf("t%d", i)}.Sanitize()
				if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (v int); INSERT INTO "+table+" VALUES ($1)", i); err != nil {
					// pgx does not take parameters in a multi-statement exec
					if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+table+" (v int)"); err != nil {
						t.Fatal(err)
					}
					if _, err := conn.Exec(ctx, "INSERT INTO "+table+" VALUES ($1)", i); err != nil {
						t.Fatal(err)
					}
				}
				var v int
				if err := conn.QueryRow(ctx, "SELECT v FROM "+table).Scan(&v); err != nil || v != i {
					t.Errorf("read back %d, %v; want %d", v, err, i)
				}

				rd := cleanroom.RedisFor(t)
				rdb := redis.NewClient(&redis.Options{Addr: rd.Addr(), Password: rd.Password()})
				defer rdb.Close()
				key := fmt.Sprintf("test:%d", i)
				if err := rdb.Set(ctx, key, i, 0).Err(); err != nil {
					t.Fatal(err)
				}
				if got, err := rdb.Get(ctx, key).Int(); err != nil || got != i {
					t.Errorf("GET %s = %d, %v", key, got, err)
				}
			})
		}
	})

	st := env.Stats()
	// Another package of the run may have started them: then this one adopted.
	if st.Started+st.Adopted != 2 || st.Replaced != 0 || st.PerTest != 0 {
		t.Errorf("stats %+v: want exactly 2 containers started or adopted for %d tests", st, parallel)
	}
	// Postgres is started by the first test's call; Redis beside it, by
	// no call (then all its calls reuse it) or, should a Redis call come
	// first, by that call.
	if st.Reused != 2*parallel-1 && st.Reused != 2*parallel-2 {
		t.Errorf("reused %d times, want %d (or %d)", st.Reused, 2*parallel-1, 2*parallel-2)
	}

	// The engine's view: one container per service, both in one pod.
	c, err := podman.Connect(context.Background(), podman.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cts, err := c.ListContainers(context.Background(), map[string]string{labels.Suite: env.Suite()})
	if err != nil {
		t.Fatal(err)
	}
	services := map[string]int{}
	pods := map[string]bool{}
	for _, ct := range cts {
		// A snapshot builder saves the start-up state for later runs in a
		// pod of its own, whose infra container carries the suite label too.
		if ct.IsInfra || ct.Labels[labels.Role] == "snapshot-builder" {
			continue
		}
		services[ct.Labels[labels.Service]]++
		pods[ct.Pod] = true
	}
	if services["postgres"] != 1 || services["redis"] != 1 || len(services) != 2 || len(pods) != 1 {
		t.Errorf("engine has containers %v in %d pods; want one postgres and one redis in one pod", services, len(pods))
	}
}
