package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/cleanroom-go/cleanroom/examples/shop/jobs"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
)

func TestMain(m *testing.M) {
	cleanroom.Main(m, cleanroom.Postgres(), cleanroom.Redis())
}

var migrate sync.Once

// queue connects to the suite's Postgres and Redis; each test has a Redis
// list of its own.
func queue(t *testing.T) *jobs.Queue {
	t.Helper()
	pg, rd := cleanroom.PostgresFor(t), cleanroom.RedisFor(t)
	db, err := pgxpool.New(context.Background(), pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	var merr error
	migrate.Do(func() { _, merr = db.Exec(context.Background(), jobs.Schema) })
	if merr != nil {
		t.Fatal(merr)
	}
	rdb := redis.NewClient(&redis.Options{Addr: rd.Addr(), Password: rd.Password()})
	t.Cleanup(func() { rdb.Close() })
	return jobs.New(db, rdb, "jobs:"+t.Name())
}

func TestJobRunsOnce(t *testing.T) {
	t.Parallel()
	q := queue(t)
	ctx := context.Background()
	id, err := q.Enqueue(ctx, "upper", "hello")
	if err != nil {
		t.Fatal(err)
	}
	got, err := q.Work(ctx, time.Second, func(kind, payload string) (string, error) { return strings.ToUpper(payload), nil })
	if err != nil || got != id {
		t.Fatalf("Work: job %d, %v; want %d", got, err, id)
	}
	if state, result, err := q.State(ctx, id); state != "done" || result != "HELLO" || err != nil {
		t.Errorf("state %s result %s err %v", state, result, err)
	}
	if _, err := q.Work(ctx, 100*time.Millisecond, nil); !errors.Is(err, jobs.ErrEmpty) {
		t.Errorf("second Work: %v, want ErrEmpty", err)
	}
}

func TestFailedJobRecordsTheError(t *testing.T) {
	t.Parallel()
	q := queue(t)
	ctx := context.Background()
	id, err := q.Enqueue(ctx, "explode", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Work(ctx, time.Second, func(string, string) (string, error) { return "", errors.New("boom") }); err != nil {
		t.Fatal(err)
	}
	if state, result, _ := q.State(ctx, id); state != "failed" || result != "boom" {
		t.Errorf("state %s result %s", state, result)
	}
}

func TestManyWorkers(t *testing.T) {
	for i := range 10 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			q := queue(t)
			ctx := context.Background()
			for j := range 5 {
				if _, err := q.Enqueue(ctx, "n", fmt.Sprint(j)); err != nil {
					t.Fatal(err)
				}
			}
			for range 5 {
				if _, err := q.Work(ctx, time.Second, func(_, p string) (string, error) { return p, nil }); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
