package jobs_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/examples/shop/jobs"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

func TestMain(m *testing.M) {
	cleanroom.Main(m, cleanroom.Postgres(), cleanroom.Redis())
}

var migrations = isolation.MigrateFunc("jobs-1", func(ctx context.Context, db *sql.DB) error {
	_, err := db.ExecContext(ctx, jobs.Schema)
	return err
})

// queue gives each test a schema of its own in the suite's Postgres and a
// leased Redis database: job IDs and list names may be the same in every
// test.
func queue(t *testing.T) *jobs.Queue {
	t.Helper()
	sc := cleanroom.NewSchema(t, migrations)
	return jobs.New(sc.Pool(), cleanroom.RedisDB(t), "jobs")
}

func TestJobRunsOnce(t *testing.T) {
	t.Parallel()
	q := queue(t)
	ctx := t.Context()
	id, err := q.Enqueue(ctx, "upper", "hello")
	if err != nil {
		t.Fatal(err)
	}
	got, err := q.Work(ctx, time.Second, func(kind, payload string) (string, error) { return strings.ToUpper(payload), nil })
	if err != nil || got != id || id != 1 {
		t.Fatalf("Work: job %d, %v; want %d, the first of a fresh schema", got, err, id)
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
	ctx := t.Context()
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
			ctx := t.Context()
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
