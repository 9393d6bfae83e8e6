package cleanroom

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// snapFake is the fake engine with snapshots, whose commit waits for gate
// (or its context).
type snapFake struct {
	*fakeEngine
	gate    chan struct{}
	commits *atomic.Int32
	podGate chan struct{} // when set, the builder's pod is looked up only once it is closed
}

func (s snapFake) InspectPod(ctx context.Context, name string) (*podman.PodInfo, error) {
	if s.podGate != nil && strings.Contains(name, "-snap-") {
		<-s.podGate
	}
	return s.fakeEngine.InspectPod(ctx, name)
}

func (s snapFake) ImageID(context.Context, string) (string, error) { return "sha256:base", nil }

// ImageExists: no snapshot image yet; the service's image is there.
func (s snapFake) ImageExists(_ context.Context, ref string) (bool, error) {
	return !strings.Contains(ref, "cleanroom-snapshot"), nil
}
func (s snapFake) Commit(ctx context.Context, container, ref string, changes []string) (string, error) {
	select {
	case <-s.gate:
		if s.commits != nil {
			s.commits.Add(1)
		}
		return "sha256:snap", nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}
func (s snapFake) ListImages(context.Context, map[string]string) ([]podman.ImageSummary, error) {
	return nil, nil
}
func (s snapFake) RemoveImage(context.Context, string) error                  { return nil }
func (s snapFake) StopContainer(context.Context, string, time.Duration) error { return nil }

// Close honours its context: a snapshot being saved is cancelled when the
// context ends first, and its builder still goes.
func TestCloseHonoursItsContext(t *testing.T) {
	f := newFakeEngine()
	eng := snapFake{fakeEngine: f, gate: make(chan struct{})}
	defer close(eng.gate)
	e, err := newEnvironment(Config{}.withDefaults(), eng, []Service{Generic("db", "example.com/db:1", WithPort(5000), WithSnapshot(), WithReady(running(f)))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Get(context.Background(), "db"); err != nil {
		t.Fatal(err)
	}
	// The snapshot build is in its commit now, waiting.
	time.Sleep(50 * time.Millisecond)
	eng.commits = &atomic.Int32{} // counts the commits that went through
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	_ = e.Close(ctx)
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("Close with a 200ms context took %s (a snapshot build held it)", took)
	}
	if _, pods, live := f.counts(); pods != 0 || live != 0 {
		t.Errorf("after Close: %d pods, %d containers; want none (the builder too)", pods, live)
	}
}

// A second SIGINT or SIGTERM during the clean-up exits at once.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	f := newFakeEngine()
	code, out, sigs := stubMain(t, f)
	stuck := make(chan struct{})
	f.removePodErr = func(string) error { <-stuck; return nil } // a clean-up that hangs
	m := &fakeM{body: func() {
		tb := &fakeTB{name: "TestX"}
		tb.run(func(tb TB) { ContainerFor(tb, "web") })
		sigs <- syscall.SIGINT
		time.Sleep(50 * time.Millisecond) // the clean-up has begun, and hangs
		sigs <- syscall.SIGINT
		for i := 0; i < 1000 && code() == -1; i++ {
			time.Sleep(time.Millisecond)
		}
		if code() != 130 {
			t.Errorf("exit code after a second SIGINT: %d, want 130 at once", code())
		}
		if !strings.Contains(out.String(), "again: exiting without waiting for the clean-up") {
			t.Errorf("output %q", out.String())
		}
	}}
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		runWith(m, Config{}, Generic("web", "example.com/web:1"))
	}()
	for i := 0; i < 5000 && code() == -1; i++ {
		time.Sleep(time.Millisecond)
	}
	close(stuck) // the hung clean-up ends, and with it Run
	<-ran
}

// A start-up failure keeps its cause: a timeout is context.DeadlineExceeded,
// and a container that stopped is said to have stopped, not to be slow.
func TestStartupErrorsKeepTheirCause(t *testing.T) {
	never := func(c *Container) healthcheck.Probe {
		return healthcheck.Func("never", func(context.Context) error { return errors.New("connection refused") })
	}
	e, _, _ := webEnv(t, Config{ContainerStartupTimeout: 200 * time.Millisecond}, WithReady(never))
	_, err := e.Get(context.Background(), "web")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "wait ready (200ms)") {
		t.Errorf("a start that timed out: %v; want context.DeadlineExceeded and the timeout named", err)
	}

	f := newFakeEngine()
	var id string
	dies := func(c *Container) healthcheck.Probe {
		return healthcheck.Func("dies", func(context.Context) error { f.kill(c.ID); id = c.ID; return errors.New("connection refused") })
	}
	e2, err := newEnvironment(Config{ContainerStartupTimeout: 10 * time.Second}.withDefaults(), f, []Service{Generic("web", "example.com/web:1", WithPort(80), WithReady(dies))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e2.Close(context.Background()) })
	began := time.Now()
	_, err = e2.Get(context.Background(), "web")
	if err == nil || !strings.Contains(err.Error(), "the container stopped before it was ready") || strings.Contains(err.Error(), "wait ready") {
		t.Errorf("a container that exited during start-up (%s): %v", id, err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("a container that exited at once took %s to report", took)
	}
}

// Notices go to stderr; the tests that look at them capture it, and the
// others' stay out of go test's output.
func TestMain(m *testing.M) {
	stderr = io.Discard
	os.Exit(m.Run())
}

// A process that closes right after its first start (a package whose tests
// are quick) still saves the snapshot that start began.
func TestCloseRightAfterAStartSavesItsSnapshot(t *testing.T) {
	f := newFakeEngine()
	open := make(chan struct{})
	close(open)
	eng := snapFake{fakeEngine: f, gate: open, commits: &atomic.Int32{}, podGate: make(chan struct{})}
	e, err := newEnvironment(Config{}.withDefaults(), eng, []Service{Generic("db", "example.com/db:1", WithPort(5000), WithSnapshot(), WithReady(running(f)))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Get(context.Background(), "db"); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error)
	go func() { closed <- e.Close(context.Background()) }()
	time.Sleep(50 * time.Millisecond) // Close has begun; the build makes its pod only now
	close(eng.podGate)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if n := eng.commits.Load(); n != 1 {
		t.Errorf("%d snapshots committed by a process that closed right after its start, want 1", n)
	}
}
