package cleanroom

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/lease"
	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
)

// A context that is done (t.Context() in a t.Cleanup, say) must get its own
// error back, and never condemn the healthy container every test shares.
func TestCancelledContextNeverCondemnsAContainer(t *testing.T) {
	var probes atomic.Int32
	probe := func(c *Container) healthcheck.Probe {
		return healthcheck.Func("ctx-aware", func(ctx context.Context) error {
			probes.Add(1)
			return ctx.Err()
		})
	}
	e, _, _ := webEnv(t, Config{ContainerHealthCheckInterval: time.Nanosecond}, WithHealth(probe))
	first, err := e.Get(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Get(ctx, "web"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context: %v, want context.Canceled", err)
	}
	if err := e.Reset(ctx, "web"); err == nil {
		t.Errorf("Reset with a cancelled context succeeded")
	}
	again, err := e.Get(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID {
		t.Errorf("the container was replaced after a cancelled caller: %s, then %s", first.ID, again.ID)
	}
	if st := e.Stats(); st.Replaced != 0 || st.Started != 1 {
		t.Errorf("stats %+v, want nothing replaced", st)
	}
}

// One failed probe of a running container is tried again before it is
// replaced.
func TestOneFailedProbeOfARunningContainerIsRetried(t *testing.T) {
	var calls atomic.Int32
	flaky := func(c *Container) healthcheck.Probe {
		return healthcheck.Func("flaky", func(ctx context.Context) error {
			if calls.Add(1) == 1 {
				return errors.New("connection reset by peer")
			}
			return nil
		})
	}
	e, _, _ := webEnv(t, Config{ContainerHealthCheckInterval: time.Nanosecond}, WithHealth(flaky))
	first, err := e.Get(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.Get(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID || e.Stats().Replaced != 0 {
		t.Errorf("a container whose probe failed once was replaced (%s, then %s; %+v)", first.ID, again.ID, e.Stats())
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d probes, want 2 (the failure and its retry)", n)
	}

	// Failing twice condemns it, and the replacement is said on stderr.
	out := captureStderr(t)
	calls.Store(-10)
	fail := func(c *Container) healthcheck.Probe {
		return healthcheck.Func("down", func(ctx context.Context) error { return errors.New("down") })
	}
	e2, _, _ := webEnv(t, Config{ContainerHealthCheckInterval: time.Nanosecond}, WithHealth(fail))
	a, err := e2.Get(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	b, err := e2.Get(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == b.ID || e2.Stats().Replaced != 1 {
		t.Errorf("a container whose probe failed twice was kept (%s, then %s; %+v)", a.ID, b.ID, e2.Stats())
	}
	if msg := out.String(); strings.Count(msg, "web: replacing container "+a.Name+": it is unhealthy: down") != 1 {
		t.Errorf("stderr, want the replacement said once:\n%s", msg)
	}
}

// A slow probe holds no lock: a caller with a deadline gets its own error
// in time, and the registry can be read meanwhile.
func TestSlowProbeHoldsNoLock(t *testing.T) {
	release := make(chan struct{})
	var slow atomic.Bool
	probe := func(c *Container) healthcheck.Probe {
		return healthcheck.Func("slow", func(ctx context.Context) error {
			if slow.Load() {
				<-release
			}
			return nil
		})
	}
	e, _, _ := webEnv(t, Config{ContainerHealthCheckInterval: time.Nanosecond}, WithHealth(probe))
	if _, err := e.Get(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	slow.Store(true)
	defer close(release)
	go func() { _, _ = e.Get(context.Background(), "web") }() // starts the slow probe
	time.Sleep(20 * time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err := e.Get(ctx, "web")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "health check") {
		t.Errorf("Get during a slow probe: %v, want its own deadline", err)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("Get with a 50ms deadline returned after %s", took)
	}
	done := make(chan struct{})
	go func() { e.registry(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Errorf("Registry blocked behind a probe")
	}
}

// A pod being created holds no lock of the environment: a caller with a
// deadline gets its own error in time, and the environment can be read.
func TestPodCreationHoldsNoLock(t *testing.T) {
	e, f, _ := webEnv(t, Config{})
	gate := make(chan struct{})
	f.podGate = gate
	defer close(gate)
	go func() { _, _ = e.Get(context.Background(), "web") }() // blocks in CreatePod
	time.Sleep(20 * time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := e.Get(ctx, "web"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get while the pod is being created: %v, want its own deadline", err)
	}
	done := make(chan struct{})
	go func() { e.registry(); e.Stats(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Errorf("the environment's state could not be read while a pod was created")
	}
}

// A factory may use the environment: it runs without its lock.
func TestFactoryMayUseTheEnvironment(t *testing.T) {
	e, f, _ := webEnv(t, Config{})
	done := make(chan error, 1)
	go func() {
		_, err := e.GetOrCreate(context.Background(), "late", func() Service {
			_ = e.registry() // takes the environment's lock
			return Generic("late", "example.com/late:1", WithPort(9000), WithReady(running(f)))
		})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a factory that reads the environment deadlocked")
	}
}

// Registering a lease waits for the suite lock (the reaper holds it while it
// removes a pod) only as long as the caller's context allows.
func TestLeaseWaitHonoursTheContext(t *testing.T) {
	e, _, _ := webEnv(t, Config{})
	files := lease.Files{Dir: t.TempDir(), Pod: e.podName}
	e.share = newShared(files)
	held, err := os.OpenFile(files.SuiteLock(), os.O_RDWR|os.O_CREATE, 0o600) // as another process holds it
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := syscall.Flock(int(held.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	if _, err := e.Get(ctx, "web"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get while another process holds the suite lock: %v, want its own deadline", err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("Get with a 100ms deadline returned after %s", took)
	}
	held.Close()
	if _, err := e.Get(context.Background(), "web"); err != nil {
		t.Errorf("Get once the lock is free: %v", err)
	}
}

// captureStderr sends the package's notices to a buffer for the test.
func captureStderr(t *testing.T) *strings.Builder {
	t.Helper()
	var out strings.Builder
	old := stderr
	stderr = &out
	noticesMu.Lock()
	noticed = map[string]bool{}
	noticesMu.Unlock()
	t.Cleanup(func() { stderr = old })
	return &out
}

// A fallback to per-test containers is not for ever: the singleton is
// tried again after a backoff, and the fallback and the return are said on
// stderr, once each, whatever the log level.
func TestFallbackRetriesTheSingletonAndSaysSo(t *testing.T) {
	out := captureStderr(t)
	old := fallbackBackoff
	fallbackBackoff = 50 * time.Millisecond
	t.Cleanup(func() { fallbackBackoff = old })

	e, f, _ := webEnv(t, Config{})
	var broken atomic.Bool
	broken.Store(true)
	f.createPodErr = func(name string) error {
		if name == e.podName && broken.Load() {
			return errors.New("netavark: port allocation failed")
		}
		return nil
	}
	use := func() *Container {
		t.Helper()
		tb := &fakeTB{name: "T"}
		var c *Container
		if !tb.run(func(tb TB) { c = e.use(tb, "web") }) {
			t.Fatalf("Use failed: %s", tb.fatal)
		}
		tb.finish()
		return c
	}
	for range 3 {
		if c := use(); c.PodName == e.podName {
			t.Fatalf("got the suite pod while it cannot be made")
		}
	}
	if n := strings.Count(out.String(), "the shared container could not be started"); n != 1 {
		t.Errorf("the fallback was said %d times on stderr, want once:\n%s", n, out)
	}

	broken.Store(false)
	time.Sleep(60 * time.Millisecond) // past the backoff
	if c := use(); c.PodName != e.podName {
		t.Errorf("after the backoff, a test got pod %s, want the suite's %s", c.PodName, e.podName)
	}
	if c := use(); c.PodName != e.podName {
		t.Errorf("after the singleton is back, a test got pod %s", c.PodName)
	}
	if !strings.Contains(out.String(), "the shared container is up again") {
		t.Errorf("the return was not said on stderr:\n%s", out)
	}
	if st := e.Stats(); st.PerTest != 3 {
		t.Errorf("stats %+v, want 3 per-test", st)
	}
}

// Parallel tests that fall back together share the pull of the image their
// containers need: a broken image is not pulled once per test.
func TestParallelFallbacksShareOnePull(t *testing.T) {
	e, f, _ := webEnv(t, Config{})
	f.imageMissing = true
	f.pullErr = errors.New("dial tcp: lookup example.com: no such host")
	f.pullDelay = 20 * time.Millisecond // the tests pile up on each pull
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tb := &fakeTB{name: "T"}
			tb.run(func(tb TB) { e.use(tb, "web") })
		}()
	}
	wg.Wait()
	f.mu.Lock()
	n := len(f.pulled)
	f.mu.Unlock()
	if n > 2 {
		t.Errorf("%d pulls of one missing image for 10 parallel tests; want at most 2 (the singleton, then the per-test fallback)", n)
	}
}
