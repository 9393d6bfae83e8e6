package healthcheck

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitRetriesUntilSuccess(t *testing.T) {
	var calls atomic.Int32
	p := Func("flaky", func(context.Context) error {
		if calls.Add(1) < 4 {
			return errors.New("not yet")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Wait(ctx, p, Options{Initial: time.Millisecond, Max: 2 * time.Millisecond}); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if n := calls.Load(); n != 4 {
		t.Errorf("probe ran %d times, want 4", n)
	}
}

// A wake-up runs the check at once: with an hour between checks, only the
// wake-ups can get the probe to its third run.
func TestWaitChecksAtOnceWhenWoken(t *testing.T) {
	var calls atomic.Int32
	checked := make(chan struct{}, 10)
	p := Func("log-driven", func(context.Context) error {
		defer func() { checked <- struct{}{} }()
		if calls.Add(1) < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	wake := make(chan struct{})
	go func() {
		for range 2 {
			<-checked
			wake <- struct{}{}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := Wait(ctx, p, Options{Initial: time.Hour, Max: time.Hour, Wake: wake}); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("probe ran %d times, want 3", n)
	}
}

func TestWaitGivesUpWithTheLastReason(t *testing.T) {
	reason := errors.New("connection refused")
	p := Func("postgres SELECT 1 at 127.0.0.1:1", func(context.Context) error { return reason })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := Wait(ctx, p, Options{Initial: time.Millisecond})
	if !errors.Is(err, reason) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait: %v; want it to wrap the reason and the deadline", err)
	}
	for _, want := range []string{"postgres SELECT 1 at 127.0.0.1:1", "attempts", "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestWaitBoundsEachAttempt(t *testing.T) {
	hang := Func("hang", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n atomic.Int32
	counting := Func("count", func(ctx context.Context) error {
		if n.Add(1) == 1 {
			return hang.Check(ctx) // the first attempt hangs until its own bound
		}
		return nil
	})
	if err := Wait(ctx, counting, Options{Attempt: 20 * time.Millisecond, Initial: time.Millisecond}); err != nil {
		t.Fatalf("a hanging attempt must be cut off and retried: %v", err)
	}
}

func TestTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	go func() { // a server that waits for its client, as Postgres does
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	if err := TCP(addr).Check(context.Background()); err != nil {
		t.Errorf("open port: %v", err)
	}
	l.Close()

	// A forwarder that accepts and hangs up, as rootless Podman's does when
	// nothing listens in the container.
	fwd, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Close()
	go func() {
		for {
			c, err := fwd.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if err := TCP(fwd.Addr().String()).Check(context.Background()); err == nil || !strings.Contains(err.Error(), "nothing listens") {
		t.Errorf("a forwarder that hangs up: %v", err)
	}
	if err := TCP(addr).Check(context.Background()); err == nil {
		t.Error("closed port: want an error")
	}
}

// fakeRedis answers each command of the Redis protocol with the next reply.
func fakeRedis(t *testing.T, replies ...string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for _, reply := range replies {
			line, err := r.ReadString('\n') // *N
			if err != nil {
				return
			}
			var n int
			if _, err := fmt.Sscan(line[1:], &n); err != nil {
				return
			}
			for i := 0; i < 2*n; i++ { // $len and the argument
				if _, err := r.ReadString('\n'); err != nil {
					return
				}
			}
			if _, err := c.Write([]byte(reply + "\r\n")); err != nil {
				return
			}
		}
	}()
	return l.Addr().String()
}

func TestRedis(t *testing.T) {
	ctx := context.Background()
	if err := Redis(fakeRedis(t, "+PONG"), "").Check(ctx); err != nil {
		t.Errorf("PONG: %v", err)
	}
	if err := Redis(fakeRedis(t, "+OK", "+PONG"), "secret").Check(ctx); err != nil {
		t.Errorf("AUTH then PONG: %v", err)
	}
	err := Redis(fakeRedis(t, "-LOADING Redis is loading the dataset in memory"), "").Check(ctx)
	if err == nil || !strings.Contains(err.Error(), "LOADING") {
		t.Errorf("a loading server is not ready: %v", err)
	}
	err = Redis(fakeRedis(t, "-WRONGPASS invalid password"), "bad").Check(ctx)
	if err == nil || !strings.Contains(err.Error(), "AUTH") {
		t.Errorf("a refused AUTH: %v", err)
	}
}

func TestPostgresNamesItsTarget(t *testing.T) {
	p := Postgres("postgres://u:p@127.0.0.1:1/db?sslmode=disable&connect_timeout=1")
	if got := p.String(); got != "postgres SELECT 1 at 127.0.0.1:1" {
		t.Errorf("String() = %q", got)
	}
	if err := p.Check(context.Background()); err == nil {
		t.Error("nothing listens on port 1: want an error")
	}
}

func TestExec(t *testing.T) {
	code, out := 2, "/var/run/postgresql:5432 - no response\n"
	var err0 error
	var got []string
	run := func(_ context.Context, cmd []string) (int, string, error) { got = cmd; return code, out, err0 }
	p := Exec(run, "pg_isready", "-q")
	err := p.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "exit code 2") || !strings.Contains(err.Error(), "no response") {
		t.Errorf("failing command: %v", err)
	}
	if strings.Join(got, " ") != "pg_isready -q" || !strings.Contains(p.String(), `"pg_isready -q"`) {
		t.Errorf("ran %q, String() = %q", got, p.String())
	}
	code, out = 0, ""
	if err := p.Check(context.Background()); err != nil {
		t.Errorf("exit 0: %v", err)
	}
	err0 = errors.New("container not running")
	if err := p.Check(context.Background()); err == nil {
		t.Error("an exec error must fail the probe")
	}
}

func TestLogLineCountsOccurrences(t *testing.T) {
	lines := []string{"LOG:  database system is ready to accept connections", "LOG:  received fast shutdown request"}
	logs := func(context.Context) ([]string, error) { return lines, nil }
	p := LogLine(logs, "ready to accept connections", 2)
	if err := p.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "seen 1 of 2") {
		t.Errorf("one of two occurrences: %v", err)
	}
	lines = append(lines, "LOG:  database system is ready to accept connections")
	if err := p.Check(context.Background()); err != nil {
		t.Errorf("two occurrences: %v", err)
	}
}

func TestHTTP(t *testing.T) {
	var status atomic.Int32
	status.Store(503)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(int(status.Load())) }))
	defer srv.Close()
	if err := HTTP(srv.URL+"/health", 0).Check(context.Background()); err == nil || !strings.Contains(err.Error(), "status 503, want 2xx") {
		t.Errorf("503: %v", err)
	}
	status.Store(204)
	if err := HTTP(srv.URL+"/health", 0).Check(context.Background()); err != nil {
		t.Errorf("204 for any 2xx: %v", err)
	}
	if err := HTTP(srv.URL+"/health", 200).Check(context.Background()); err == nil {
		t.Error("204 when 200 is wanted must fail")
	}
}
