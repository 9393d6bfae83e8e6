package cleanroom

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// fakeEngine is an in-memory Podman at the engine seam.
type fakeEngine struct {
	mu         sync.Mutex
	pods       map[string]*podman.PodInfo // by name
	containers map[string]*fakeContainer  // by ID
	nextPort   uint16
	nextID     int
	created    int // containers created
	podsMade   int
	closed     int

	startDelay   time.Duration                   // each StartContainer sleeps this long
	startHook    func(name string)               // called by StartContainer with the container's name, before it starts
	podGate      chan struct{}                   // when set, CreatePod waits until it is closed
	createPodErr func(name string) error         // fails CreatePod when it returns non-nil
	removePodErr func(name string) error         // fails RemovePod when it returns non-nil
	imageMissing bool                            // ImageExists says no
	imageLookups int                             // ImageExists calls
	pullErr      error                           // Pull fails with it
	pullDelay    time.Duration                   // each Pull takes this long
	pulled       []string                        // references pulled
	execResult   podman.ExecResult               // what Exec returns
	execs        [][]string                      // commands exec'd
	onCreate     func(spec podman.ContainerSpec) // called for each created container
	uri          string                          // what Endpoint says; "" for a fake without one
}

// endpointEngine is a fake engine that says where it is, as a real client
// does: New then sets up leases for it.
type endpointEngine struct{ *fakeEngine }

func (f endpointEngine) Endpoint() podman.Endpoint {
	return podman.Endpoint{URI: f.uri, Source: podman.SourceExplicit}
}

type fakeContainer struct {
	spec    podman.ContainerSpec
	id      string
	running bool
	started bool
	logs    []string
	created time.Time
}

// managed adds the label pkg/podman puts on everything it creates.
func managed(labels map[string]string) map[string]string {
	out := map[string]string{podman.LabelManaged: "true"}
	for k, v := range labels {
		out[k] = v
	}
	return out
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{pods: map[string]*podman.PodInfo{}, containers: map[string]*fakeContainer{}, nextPort: 40000}
}

func (f *fakeEngine) CreatePod(_ context.Context, spec podman.PodSpec) (string, error) {
	if f.podGate != nil {
		<-f.podGate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.createPodErr != nil {
		if err := f.createPodErr(spec.Name); err != nil {
			return "", err
		}
	}
	if _, ok := f.pods[spec.Name]; ok {
		return "", &podman.APIError{Op: "create pod " + spec.Name, StatusCode: 409, Message: "pod already exists"}
	}
	f.nextID++
	info := &podman.PodInfo{ID: fmt.Sprintf("pod%04d", f.nextID), Name: spec.Name, Labels: managed(spec.Labels), Ports: map[string]podman.HostAddr{}}
	for _, p := range spec.Ports {
		f.nextPort++
		info.Ports[fmt.Sprintf("%d/tcp", p.ContainerPort)] = podman.HostAddr{IP: "127.0.0.1", Port: f.nextPort}
	}
	f.pods[spec.Name] = info
	f.podsMade++
	return info.ID, nil
}

func (f *fakeEngine) podByNameOrID(nameOrID string) *podman.PodInfo {
	for _, p := range f.pods {
		if p.Name == nameOrID || p.ID == nameOrID {
			return p
		}
	}
	return nil
}

func (f *fakeEngine) InspectPod(_ context.Context, nameOrID string) (*podman.PodInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.podByNameOrID(nameOrID); p != nil {
		cp := *p
		return &cp, nil
	}
	return nil, &podman.APIError{Op: "inspect pod " + nameOrID, StatusCode: 404, Message: "no such pod"}
}

func (f *fakeEngine) ListPods(_ context.Context, labels map[string]string) ([]podman.PodSummary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []podman.PodSummary
	for _, p := range f.pods {
		match := true
		for k, v := range labels {
			if p.Labels[k] != v {
				match = false
			}
		}
		if match {
			out = append(out, podman.PodSummary{ID: p.ID, Name: p.Name, Labels: p.Labels})
		}
	}
	return out, nil
}

func (f *fakeEngine) StartPod(context.Context, string) error { return nil }

func (f *fakeEngine) RemovePod(_ context.Context, nameOrID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.podByNameOrID(nameOrID)
	if p == nil {
		return &podman.APIError{Op: "remove pod " + nameOrID, StatusCode: 404, Message: "no such pod"}
	}
	if f.removePodErr != nil {
		if err := f.removePodErr(p.Name); err != nil {
			return err
		}
	}
	for id, c := range f.containers {
		if c.spec.Pod == p.ID || c.spec.Pod == p.Name {
			delete(f.containers, id)
		}
	}
	delete(f.pods, p.Name)
	return nil
}

func (f *fakeEngine) CreateContainer(_ context.Context, spec podman.ContainerSpec) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if spec.Pod != "" && f.podByNameOrID(spec.Pod) == nil {
		return "", &podman.APIError{Op: "create container " + spec.Name, StatusCode: 404, Message: "no pod with name or ID " + spec.Pod + " found: no such pod"}
	}
	for _, c := range f.containers {
		if c.spec.Name == spec.Name {
			return "", &podman.APIError{Op: "create container " + spec.Name, StatusCode: 500, Message: "the container name is already in use"}
		}
	}
	f.nextID++
	id := fmt.Sprintf("ctr%04d", f.nextID)
	spec.Labels = managed(spec.Labels)
	f.containers[id] = &fakeContainer{spec: spec, id: id, logs: []string{"booting " + spec.Name}, created: time.Now()}
	f.created++
	if f.onCreate != nil {
		f.onCreate(spec)
	}
	return id, nil
}

func (f *fakeEngine) find(nameOrID string) *fakeContainer {
	if c, ok := f.containers[nameOrID]; ok {
		return c
	}
	for _, c := range f.containers {
		if c.spec.Name == nameOrID {
			return c
		}
	}
	return nil
}

func (f *fakeEngine) StartContainer(_ context.Context, nameOrID string) error {
	time.Sleep(f.startDelay)
	if f.startHook != nil {
		f.mu.Lock()
		name := nameOrID
		if c := f.find(nameOrID); c != nil {
			name = c.spec.Name
		}
		f.mu.Unlock()
		f.startHook(name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.find(nameOrID)
	if c == nil {
		return &podman.APIError{Op: "start", StatusCode: 404, Message: "no such container"}
	}
	c.running, c.started = true, true
	return nil
}

func (f *fakeEngine) InspectContainer(_ context.Context, nameOrID string) (*podman.ContainerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.find(nameOrID)
	if c == nil {
		return nil, &podman.APIError{Op: "inspect container " + nameOrID, StatusCode: 404, Message: "no such container"}
	}
	status := "exited"
	switch {
	case c.running:
		status = "running"
	case !c.started:
		status = "created"
	}
	pod := c.spec.Pod
	if p := f.podByNameOrID(pod); p != nil {
		pod = p.ID
	}
	return &podman.ContainerInfo{ID: c.id, Name: c.spec.Name, Labels: c.spec.Labels, Pod: pod, Created: c.created,
		State: podman.ContainerState{Status: status, Running: c.running, ExitCode: map[bool]int{true: 0, false: 137}[c.running]}}, nil
}

func (f *fakeEngine) RemoveContainer(_ context.Context, nameOrID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.find(nameOrID)
	if c == nil {
		return &podman.APIError{Op: "remove container " + nameOrID, StatusCode: 404, Message: "no such container"}
	}
	delete(f.containers, c.id)
	return nil
}

func (f *fakeEngine) Logs(_ context.Context, nameOrID string, tail int) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.find(nameOrID)
	if c == nil {
		return nil, &podman.APIError{Op: "logs", StatusCode: 404, Message: "no such container"}
	}
	lines := c.logs
	if tail > 0 && len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	return append([]string(nil), lines...), nil
}

func (f *fakeEngine) Exec(_ context.Context, nameOrID string, cmd []string) (podman.ExecResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.execs = append(f.execs, cmd)
	return f.execResult, nil
}

func (f *fakeEngine) ImageExists(context.Context, string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.imageLookups++
	return !f.imageMissing, nil
}

func (f *fakeEngine) Pull(_ context.Context, ref string, progress func(podman.PullEvent)) error {
	time.Sleep(f.pullDelay)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pulled = append(f.pulled, ref)
	if f.pullErr != nil {
		return f.pullErr
	}
	f.imageMissing = false
	progress(podman.PullEvent{Status: "Download complete"})
	return nil
}

func (f *fakeEngine) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed++
	return nil
}

// kill stops a container from outside, as `podman kill` would.
func (f *fakeEngine) kill(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.find(id); c != nil {
		c.running, c.started = false, true
	}
}

func (f *fakeEngine) counts() (created, pods, live int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.created, len(f.pods), len(f.containers)
}

// running is a Ready/Health probe that asks the fake engine whether the
// container runs: the network probes of real services, at the seam.
func running(f *fakeEngine) func(c *Container) healthcheck.Probe {
	return func(c *Container) healthcheck.Probe {
		return healthcheck.Func("fake probe", func(ctx context.Context) error {
			info, err := f.InspectContainer(ctx, c.ID)
			if err != nil {
				return err
			}
			if !info.State.Running {
				return errors.New("connection refused")
			}
			return nil
		})
	}
}

// logRecorder is a slog handler that keeps every message.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Message)
	rec.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	r.mu.Lock()
	r.msgs = append(r.msgs, b.String())
	r.mu.Unlock()
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

func (r *logRecorder) find(substr string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if strings.Contains(m, substr) {
			return m
		}
	}
	return ""
}

// testEnv builds an Environment on a fake engine.
func testEnv(t *testing.T, cfg Config, services ...Service) (*Environment, *fakeEngine, *logRecorder) {
	t.Helper()
	f := newFakeEngine()
	rec := &logRecorder{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(rec)
	}
	e, err := newEnvironment(cfg.withDefaults(), f, services)
	if err != nil {
		t.Fatalf("newEnvironment: %v", err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	return e, f, rec
}

// fakeTB records what a helper does to a test; Fatalf ends the calling
// goroutine as testing.T's does.
type fakeTB struct {
	mu       sync.Mutex
	name     string
	fatal    string
	errs     []string
	logs     []string
	cleanups []func()
}

func (tb *fakeTB) Helper() {}
func (tb *fakeTB) Failed() bool {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.fatal != "" || len(tb.errs) > 0
}
func (tb *fakeTB) Name() string { return tb.name }
func (tb *fakeTB) Fatalf(format string, args ...any) {
	tb.mu.Lock()
	tb.fatal = fmt.Sprintf(format, args...)
	tb.mu.Unlock()
	runtime.Goexit()
}
func (tb *fakeTB) Errorf(format string, args ...any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.errs = append(tb.errs, fmt.Sprintf(format, args...))
}
func (tb *fakeTB) Logf(format string, args ...any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.logs = append(tb.logs, fmt.Sprintf(format, args...))
}
func (tb *fakeTB) Cleanup(f func()) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.cleanups = append(tb.cleanups, f)
}

// run calls fn as a test body on its own goroutine (so Fatalf can end it)
// and returns whether it finished without Fatalf.
func (tb *fakeTB) run(fn func(tb TB)) bool {
	done := make(chan bool)
	go func() {
		ok := false
		defer func() { done <- ok }()
		fn(tb)
		ok = true
	}()
	return <-done
}

// finish runs the cleanups, last first, as testing does.
func (tb *fakeTB) finish() {
	for i := len(tb.cleanups) - 1; i >= 0; i-- {
		tb.cleanups[i]()
	}
	tb.cleanups = nil
}
