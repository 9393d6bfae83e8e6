package isolation_test

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

// recordingTB is a fake test: it fails on demand, records what a helper
// says to it, and its Fatalf ends the goroutine as testing.T's does.
type recordingTB struct {
	mu       sync.Mutex
	name     string
	failed   bool
	fatal    string
	logs     []string
	errs     []string
	cleanups []func()
}

func (r *recordingTB) Helper()      {}
func (r *recordingTB) Name() string { return r.name }
func (r *recordingTB) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed || r.fatal != "" || len(r.errs) > 0
}
func (r *recordingTB) Logf(format string, args ...any) {
	r.mu.Lock()
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}
func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.fatal = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}
func (r *recordingTB) Cleanup(f func()) {
	r.mu.Lock()
	r.cleanups = append(r.cleanups, f)
	r.mu.Unlock()
}

// finish runs the cleanups, last first, as a test's end does.
func (r *recordingTB) finish() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// A server that never answers must not hold up the helpers of every other
// server: no lock is held while one connects.
func TestStuckServerHoldsUpNoOtherServer(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept() // and never say a word
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	stuck := &recordingTB{name: t.Name() + "/stuck"}
	go isolation.NewDatabase(stuck, fmt.Sprintf("postgres://u:p@%s/db?sslmode=disable&connect_timeout=30", l.Addr()), migrations)
	time.Sleep(100 * time.Millisecond) // it is connecting now

	pg := cleanroom.PostgresFor(t)
	began := time.Now()
	tb := &recordingTB{name: t.Name()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		isolation.NewDatabase(tb, pg.URL(), migrations)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("NewDatabase on a healthy server waited %s behind a server that never answers", time.Since(began).Round(time.Millisecond))
	}
	if tb.fatal != "" {
		t.Fatal(tb.fatal)
	}
	tb.finish()
}

// A lost lease (the process paused longer than the TTL, or Redis replaced)
// fails the test that held it, and its release does not flush a database
// that may be another test's by then.
func TestLostRedisLeaseFailsTheTest(t *testing.T) {
	// Not parallel: the TTL is read from the environment.
	t.Setenv(isolate.LeaseTTLEnv, "1")
	rd := cleanroom.RedisFor(t)
	ctx := context.Background()
	holder := &recordingTB{name: "TestHoldsALease"}
	c := isolation.RedisDB(holder, rd.Options())
	db := c.Options().DB

	admin := redis.NewClient(rd.Options())
	defer admin.Close()
	if err := admin.Del(ctx, isolate.LeaseKeyPrefix+strconv.Itoa(db)).Err(); err != nil {
		t.Fatal(err)
	}
	opts := rd.Options()
	opts.DB = db
	other := redis.NewClient(opts) // whoever has the database now
	defer other.Close()
	if err := other.Set(ctx, "someone-else", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	defer other.FlushDB(ctx)
	time.Sleep(800 * time.Millisecond) // two renewals (every TTL/3)

	holder.finish()
	if len(holder.errs) != 1 || !strings.Contains(holder.errs[0], "was lost") {
		t.Errorf("the holder's errors: %q; want the lost lease", holder.errs)
	}
	if v, err := other.Get(ctx, "someone-else").Result(); err != nil || v != "x" {
		t.Errorf("the release of a lost lease flushed the database: %q, %v", v, err)
	}
}
