package cleanroom

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

func TestHealthCheckBeforeReuse(t *testing.T) {
	var probes atomic.Int32
	counting := func(c *Container) healthcheck.Probe {
		return healthcheck.Func("counting", func(ctx context.Context) error { probes.Add(1); return nil })
	}

	t.Run("cached within the interval", func(t *testing.T) {
		probes.Store(0)
		e, _, _ := webEnv(t, Config{ContainerHealthCheckInterval: time.Hour}, WithHealth(counting))
		for range 10 {
			if _, err := e.Get(context.Background(), "web"); err != nil {
				t.Fatal(err)
			}
		}
		if n := probes.Load(); n != 0 {
			t.Errorf("%d health probes within the interval, want 0", n)
		}
	})

	t.Run("probed after the interval", func(t *testing.T) {
		probes.Store(0)
		e, _, _ := webEnv(t, Config{ContainerHealthCheckInterval: time.Nanosecond}, WithHealth(counting))
		for range 10 {
			if _, err := e.Get(context.Background(), "web"); err != nil {
				t.Fatal(err)
			}
		}
		if n := probes.Load(); n != 9 {
			t.Errorf("%d health probes for 9 reuses, want 9", n)
		}
	})
}

func TestUnhealthyContainerIsReplacedAndLogged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(f *fakeEngine, id string)
		reason string
	}{
		{"killed", func(f *fakeEngine, id string) { f.kill(id) }, "exited, exit code 137"},
		{"removed", func(f *fakeEngine, id string) { _ = f.RemoveContainer(context.Background(), id) }, "the container is gone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, f, rec := webEnv(t, Config{ContainerHealthCheckInterval: time.Nanosecond})
			first, err := e.Get(context.Background(), "web")
			if err != nil {
				t.Fatal(err)
			}
			tc.break_(f, first.ID)
			second, err := e.Get(context.Background(), "web")
			if err != nil {
				t.Fatalf("get after the container broke: %v", err)
			}
			if second.ID == first.ID || second.Name != first.Name {
				t.Errorf("replacement %s (%s), first %s (%s): want a new container under the same name", second.ID, second.Name, first.ID, first.Name)
			}
			msg := rec.find("replacing container")
			if msg == "" || !strings.Contains(msg, "unhealthy") || !strings.Contains(msg, tc.reason) {
				t.Errorf("replacement log %q does not say why (%s)", msg, tc.reason)
			}
			if _, err := f.InspectContainer(context.Background(), first.ID); !errors.Is(err, podman.ErrNotFound) {
				t.Errorf("the replaced container is still there: %v", err)
			}
			if st := e.Stats(); st.Replaced != 1 || st.Started != 2 {
				t.Errorf("stats %+v, want 1 replaced, 2 started", st)
			}
		})
	}
}

func TestOldContainerIsReplacedOnlyWhenNoTestUsesIt(t *testing.T) {
	e2, _, rec := webEnv(t, Config{MaxContainerReuseTime: 50 * time.Millisecond})

	user := &fakeTB{name: "TestHolding"}
	var held *Container
	if !user.run(func(tb TB) { held = e2.use(tb, "web") }) {
		t.Fatalf("Use: %s", user.fatal)
	}
	time.Sleep(60 * time.Millisecond) // older than max_container_reuse_time

	other := &fakeTB{name: "TestOther"}
	var got *Container
	other.run(func(tb TB) { got = e2.use(tb, "web") })
	if got != held {
		t.Fatalf("a container in use was replaced for its age: held %s, got %s", held.ID, got.ID)
	}
	other.finish()
	user.finish() // no test of this process uses it now

	fresh, err := e2.Get(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if fresh.ID == held.ID {
		t.Fatalf("a container older than max_container_reuse_time was reused when idle")
	}
	if msg := rec.find("replacing"); !strings.Contains(msg, "max_container_reuse_time") {
		t.Errorf("replacement log %q does not say why", msg)
	}
}

// followEngine is a fake engine whose containers' logs can be followed:
// each string sent on lines is a line the container writes.
type followEngine struct {
	*fakeEngine
	lines chan string
}

func (f followEngine) FollowLogs(ctx context.Context, _ string, each func(string)) error {
	for {
		select {
		case l := <-f.lines:
			each(l)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// A server that logs its readiness is probed at once: with an hour between
// polls, only the log line can get the probe run again.
func TestReadinessIsProbedWhenTheServerLogs(t *testing.T) {
	saved := readyPolling
	readyPolling = healthcheck.Options{Initial: time.Hour, Max: time.Hour}
	t.Cleanup(func() { readyPolling = saved })

	f := newFakeEngine()
	eng := followEngine{fakeEngine: f, lines: make(chan string)}
	e, err := newEnvironment(Config{}.withDefaults(), eng, []Service{Generic("web", "example.com/web:1", WithPort(8080))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	var ready atomic.Bool
	probed := make(chan struct{}, 1)
	e.byName["web"].svc.ready = func(*Container) healthcheck.Probe {
		return healthcheck.Func("web", func(context.Context) error {
			select {
			case probed <- struct{}{}:
			default:
			}
			if !ready.Load() {
				return errors.New("connection refused")
			}
			return nil
		})
	}
	go func() {
		<-probed // the first probe failed: now the server comes up and says so
		ready.Store(true)
		eng.lines <- "web: ready to accept connections"
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.Get(ctx, "web"); err != nil {
		t.Fatalf("Get: %v (the log line did not trigger a probe)", err)
	}
}
