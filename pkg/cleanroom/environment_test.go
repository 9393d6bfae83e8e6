package cleanroom

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// webEnv is an environment with one Generic service "web" on a fake
// engine, ready (and healthy) while the fake container runs.
func webEnv(t *testing.T, cfg Config, opts ...Option) (*Environment, *fakeEngine, *logRecorder) {
	t.Helper()
	e, f, rec := testEnv(t, cfg, Generic("web", "example.com/web:1", append([]Option{WithPort(8080)}, opts...)...))
	if svc := e.byName["web"].svc; svc.ready == nil {
		svc.ready = running(f)
	}
	return e, f, rec
}

// The first use of one declared service starts the others beside it: web
// cannot finish starting until the cache has begun to start, which only
// happens when nobody waits for web first.
func TestFirstUseStartsEveryDeclaredServiceAtOnce(t *testing.T) {
	e, f, _ := testEnv(t, Config{},
		Generic("web", "example.com/web:1", WithPort(8080)),
		Generic("cache", "example.com/cache:1", WithPort(6379)))
	for _, ent := range e.declared {
		ent.svc.ready = running(f)
	}
	cacheStarting := make(chan struct{})
	f.startHook = func(name string) {
		switch {
		case strings.HasSuffix(name, "-cache"):
			close(cacheStarting)
		case strings.HasSuffix(name, "-web"):
			select {
			case <-cacheStarting:
			case <-time.After(time.Minute):
				t.Error("the cache did not start while web was starting")
			}
		}
	}
	if _, err := e.Get(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	cache, err := e.Get(context.Background(), "cache")
	if err != nil {
		t.Fatal(err)
	}
	if created, pods, _ := f.counts(); created != 2 || pods != 1 {
		t.Errorf("created %d containers in %d pods, want 2 in 1", created, pods)
	}
	if again, _ := e.Get(context.Background(), "cache"); again != cache {
		t.Errorf("the cache started twice")
	}
	// No call started the cache: both were handed it.
	if st := e.Stats(); st.Started != 2 || st.Reused != 2 {
		t.Errorf("stats %+v: want 2 started, 2 reused", st)
	}
}

func TestConcurrentGetOrCreateCreatesOnce(t *testing.T) {
	e, f, _ := webEnv(t, Config{})
	f.startDelay = 50 * time.Millisecond // let all callers pile up on the creation

	const n = 200
	var wg sync.WaitGroup
	got := make([]*Container, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = e.GetOrCreate(context.Background(), "web", nil)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if got[i] != got[0] {
			t.Fatalf("caller %d got container %s, caller 0 got %s", i, got[i].ID, got[0].ID)
		}
	}
	if created, pods, _ := f.counts(); created != 1 || pods != 1 {
		t.Errorf("created %d containers in %d pods, want 1 in 1", created, pods)
	}
	if st := e.Stats(); st.Started != 1 || st.Reused != n-1 {
		t.Errorf("stats %+v, want 1 started and %d reused", st, n-1)
	}
}

func TestFailedCreationReachesEveryWaiterAndIsRetried(t *testing.T) {
	f := newFakeEngine()
	var ready atomic.Bool
	svc := Generic("db", "example.com/db:1", WithPort(5432), WithReady(func(c *Container) healthcheck.Probe {
		return healthcheck.Func("db handshake", func(context.Context) error {
			if !ready.Load() {
				return errors.New("the database system is starting up")
			}
			return nil
		})
	}))
	cfg := Config{ContainerStartupTimeout: 300 * time.Millisecond}.withDefaults()
	e, err := newEnvironment(cfg, f, []Service{svc})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())

	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.Get(context.Background(), "db")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			t.Fatalf("caller %d: no error from a service that never became ready", i)
		}
		for _, want := range []string{"start db: wait ready (300ms)", "db handshake", "the database system is starting up", "last 1 log lines", "booting"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("caller %d: error does not say %q:\n%v", i, want, err)
			}
		}
	}
	created, _, live := f.counts()
	if created != 1 {
		t.Errorf("%d creations for %d concurrent callers, want 1 (the failure is shared)", created, n)
	}
	if live != 0 {
		t.Errorf("%d containers left after the failed start, want 0", live)
	}

	// Not cached for ever: the next call tries again, and succeeds.
	ready.Store(true)
	if _, err := e.Get(context.Background(), "db"); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if created, _, live := f.counts(); created != 2 || live != 1 {
		t.Errorf("after the retry: %d created, %d live; want 2 and 1", created, live)
	}
}

func TestPerTestContainersWhenSingletonsAreOff(t *testing.T) {
	e, f, _ := webEnv(t, Config{DisableSingletonContainers: true})
	var ids []string
	for i := range 3 {
		tb := &fakeTB{name: "T"}
		if !tb.run(func(tb TB) { ids = append(ids, e.use(tb, "web").ID) }) {
			t.Fatalf("Use %d: %s", i, tb.fatal)
		}
		if _, pods, live := f.counts(); pods != 1 || live != 1 {
			t.Fatalf("while test %d runs: %d pods, %d containers; want its own 1 and 1", i, pods, live)
		}
		tb.finish()
		if _, pods, live := f.counts(); pods != 0 || live != 0 {
			t.Fatalf("after test %d: %d pods, %d containers left; want none", i, pods, live)
		}
	}
	if ids[0] == ids[1] || ids[1] == ids[2] {
		t.Errorf("per-test containers were shared: %v", ids)
	}
	if st := e.Stats(); st.PerTest != 3 {
		t.Errorf("stats %+v, want 3 per-test", st)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.imageLookups != 1 {
		t.Errorf("the image was looked up %d times for 3 starts; want once", f.imageLookups)
	}
}

func TestFallbackToPerTestWhenThePodCannotBeMade(t *testing.T) {
	e, f, rec := webEnv(t, Config{})
	f.createPodErr = func(name string) error {
		if name == e.podName { // the suite pod
			return &podman.APIError{Op: "create pod " + name, StatusCode: 500, Message: "netavark: port allocation failed"}
		}
		return nil
	}
	for i := range 2 {
		tb := &fakeTB{name: "T"}
		if !tb.run(func(tb TB) { e.use(tb, "web") }) {
			t.Fatalf("Use %d failed instead of falling back: %s", i, tb.fatal)
		}
		tb.finish()
		if len(tb.errs) > 0 {
			t.Errorf("test %d: %v", i, tb.errs)
		}
	}
	msg := rec.find("falling back to per-test containers")
	if msg == "" || !strings.Contains(msg, "port allocation failed") {
		t.Errorf("no warning with the cause: %q", msg)
	}
	if st := e.Stats(); st.PerTest != 2 {
		t.Errorf("stats %+v, want 2 per-test", st)
	}
	if _, pods, live := f.counts(); pods != 0 || live != 0 {
		t.Errorf("%d pods, %d containers left; want none", pods, live)
	}
}

func TestBrokenServiceFailsFastWithTheRootCause(t *testing.T) {
	e, f, _ := webEnv(t, Config{})
	f.imageMissing = true
	f.pullErr = &podman.APIError{Op: "pull image example.com/web:1", Message: "dial tcp: lookup example.com: no such host"}
	for i := range 3 {
		tb := &fakeTB{name: "T"}
		if tb.run(func(tb TB) { e.use(tb, "web") }) {
			t.Fatalf("Use %d succeeded without an image", i)
		}
		for _, want := range []string{"example.com/web:1", "no such host", "CLEANROOM_WEB_IMAGE"} {
			if !strings.Contains(tb.fatal, want) {
				t.Errorf("Use %d: failure does not say %q: %s", i, want, tb.fatal)
			}
		}
	}
	if n := len(f.pulled); n != 2 {
		t.Errorf("%d pulls; want 2 (singleton, then per-test), then fail fast", n)
	}
}

func TestUseCountsAndReleases(t *testing.T) {
	e, _, _ := webEnv(t, Config{})
	var tbs []*fakeTB
	for range 3 {
		tb := &fakeTB{name: "T"}
		tb.run(func(tb TB) { e.use(tb, "web") })
		tbs = append(tbs, tb)
	}
	if u := e.registry()["web"].Users; u != 3 {
		t.Errorf("users %d, want 3", u)
	}
	for _, tb := range tbs {
		tb.finish()
	}
	if u := e.registry()["web"].Users; u != 0 {
		t.Errorf("users after the tests %d, want 0", u)
	}
}

func TestImageIsPulledWhenMissing(t *testing.T) {
	e, f, rec := webEnv(t, Config{})
	f.imageMissing = true
	if _, err := e.Get(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"example.com/web:1"}, f.pulled); diff != "" {
		t.Errorf("pulls (-want +got):\n%s", diff)
	}
	if rec.find("pulled image") == "" {
		t.Error("the pull was not logged")
	}
}

func TestLabelsMirrorTheRegistry(t *testing.T) {
	t.Setenv("CLEANROOM_RUN_ID", "ci-build-4711")
	e, f, _ := webEnv(t, Config{})
	var spec podman.ContainerSpec
	f.onCreate = func(s podman.ContainerSpec) { spec = s }
	c, err := e.Get(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{labels.Suite: e.Suite(), labels.Service: "web", labels.Version: labels.LibraryVersion(), labels.Run: e.run, labels.RunID: "ci-build-4711"} {
		if spec.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, spec.Labels[k], want)
		}
	}
	for _, k := range []string{labels.ConfigHash, labels.CreatedAt, labels.PID} {
		if spec.Labels[k] == "" {
			t.Errorf("label %s missing", k)
		}
	}
	if spec.Pod != c.PodID || spec.Timeout < 2*time.Hour {
		t.Errorf("pod %q timeout %s: want the suite pod and a run-time limit of at least 2 × max_container_reuse_time", spec.Pod, spec.Timeout)
	}
	reg := e.registry()["web"]
	if reg.ContainerID != c.ID || reg.PodID != c.PodID {
		t.Errorf("registry %+v, container %+v", reg, c)
	}
	pod, _ := f.InspectPod(context.Background(), c.PodID)
	if pod.Labels[labels.Suite] != e.Suite() || pod.Labels[labels.Role] != "suite" {
		t.Errorf("pod labels %v", pod.Labels)
	}
}

func TestGetOrCreateLateServiceGetsItsOwnPod(t *testing.T) {
	e, f, _ := webEnv(t, Config{})
	var calls int
	factory := func() Service {
		calls++
		return Generic("ignored-name", "example.com/cache:1", WithPort(11211), WithReady(running(f)))
	}
	a, err := e.GetOrCreate(context.Background(), "cache", factory)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.GetOrCreate(context.Background(), "cache", factory)
	if err != nil {
		t.Fatal(err)
	}
	w, err := e.Get(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if a != b || calls != 1 || a.Service != "cache" {
		t.Errorf("late service: %v %v, factory calls %d", a, b, calls)
	}
	if a.PodID == w.PodID || a.Port(11211) == 0 {
		t.Errorf("the late service must live in a pod of its own with its port published: %+v", a)
	}
	if _, err := e.Get(context.Background(), "nope"); err == nil || !strings.Contains(err.Error(), "declared: web") {
		t.Errorf("unknown service: %v", err)
	}
}

func TestVanishedPodIsRecreated(t *testing.T) {
	e, f, rec := webEnv(t, Config{ContainerHealthCheckInterval: time.Nanosecond})
	first, err := e.Get(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.RemovePod(context.Background(), first.PodID); err != nil {
		t.Fatal(err)
	}
	second, err := e.Get(context.Background(), "web")
	if err != nil {
		t.Fatalf("get after the pod was removed from outside: %v", err)
	}
	if second.PodID == first.PodID {
		t.Errorf("still in the removed pod")
	}
	if rec.find("pod vanished") == "" {
		t.Error("the new pod was not logged")
	}
}

func TestCloseRemovesEverythingAndAggregatesFailures(t *testing.T) {
	e, f, _ := webEnv(t, Config{})
	if _, err := e.Get(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	late := Generic("x", "example.com/x:1", WithReady(running(f)))
	if _, err := e.GetOrCreate(context.Background(), "x", func() Service { return late }); err != nil {
		t.Fatal(err)
	}
	f.removePodErr = func(name string) error {
		return &podman.APIError{Op: "remove pod " + name, StatusCode: 500, Message: "device busy"}
	}
	err := e.Close(context.Background())
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 2 {
		t.Fatalf("Close: %v; want both pod failures", err)
	}
	if again := e.Close(context.Background()); again != err {
		t.Errorf("second Close: %v, want the same result", again)
	}
	if _, err := e.Get(context.Background(), "web"); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Get after Close: %v", err)
	}

	f.removePodErr = nil
	e2, f2, _ := webEnv(t, Config{})
	if _, err := e2.Get(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	if err := e2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, pods, live := f2.counts(); pods != 0 || live != 0 || f2.closed != 1 {
		t.Errorf("after Close: %d pods, %d containers, engine closed %d times", pods, live, f2.closed)
	}
}

func TestReset(t *testing.T) {
	var got *Container
	e, _, _ := webEnv(t, Config{}, WithReset(func(_ context.Context, c *Container) error { got = c; return nil }))
	if err := e.Reset(context.Background(), "web"); err != nil || got == nil {
		t.Fatalf("WithReset: %v, called with %v", err, got)
	}

	e2, f2, _ := webEnv(t, Config{}, WithResetCommand("cli", "flush"))
	f2.execResult = podman.ExecResult{ExitCode: 2, Stderr: []byte("permission denied\n")}
	err := e2.Reset(context.Background(), "web")
	if err == nil || !strings.Contains(err.Error(), "exited with 2: permission denied") {
		t.Errorf("failing reset command: %v", err)
	}
	if diff := cmp.Diff([][]string{{"cli", "flush"}}, f2.execs); diff != "" {
		t.Errorf("execs (-want +got):\n%s", diff)
	}

	e3, _, _ := webEnv(t, Config{})
	if err := e3.Reset(context.Background(), "web"); err == nil || !strings.Contains(err.Error(), "ResetCommand") {
		t.Errorf("service without reset: %v", err)
	}
}
