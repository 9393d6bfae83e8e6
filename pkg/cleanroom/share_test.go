package cleanroom

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// twoProcesses builds two environments of one suite on one engine: two
// test processes of `go test ./...`, as far as the engine can tell.
func twoProcesses(t *testing.T, f *fakeEngine, opts ...Option) (*Environment, *Environment) {
	t.Helper()
	var envs []*Environment
	for range 2 {
		e, err := newEnvironment(Config{Suite: "shop"}.withDefaults(), f, []Service{Generic("web", "example.com/web:1", append([]Option{WithPort(8080), WithReady(running(f))}, opts...)...)})
		if err != nil {
			t.Fatal(err)
		}
		envs = append(envs, e)
	}
	return envs[0], envs[1]
}

func TestSecondProcessAdoptsPodAndContainer(t *testing.T) {
	f := newFakeEngine()
	a, b := twoProcesses(t, f)
	ca, err := a.Get(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	cb, err := b.Get(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if ca.ID != cb.ID || ca.PodID != cb.PodID || ca.Addr(8080) != cb.Addr(8080) {
		t.Errorf("the second process got %+v, the first %+v; want the same container", cb, ca)
	}
	if ca.secret != cb.secret || ca.secret == "" {
		t.Errorf("secrets %q and %q: the adopter must use the creator's", ca.secret, cb.secret)
	}
	if created, pods, _ := f.counts(); created != 1 || pods != 1 {
		t.Errorf("%d containers in %d pods, want 1 in 1", created, pods)
	}
	if sa, sb := a.Stats(), b.Stats(); sa.Started != 1 || sb.Started != 0 || sb.Adopted != 1 {
		t.Errorf("stats: creator %+v, adopter %+v", sa, sb)
	}
	if a.podName != "cleanroom-shop" {
		t.Errorf("pod name %s, want cleanroom-shop", a.podName)
	}
}

func TestConcurrentProcessesCreateOnce(t *testing.T) {
	f := newFakeEngine()
	f.startDelay = 30 * time.Millisecond
	a, b := twoProcesses(t, f)
	var wg sync.WaitGroup
	ids := make([]string, 2)
	for i, e := range []*Environment{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := e.Get(context.Background(), "web")
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = c.ID
		}()
	}
	wg.Wait()
	if ids[0] != ids[1] {
		t.Errorf("two processes got %v", ids)
	}
	if created, pods, _ := f.counts(); created != 1 || pods != 1 {
		t.Errorf("%d containers in %d pods, want 1 in 1", created, pods)
	}
}

func TestDeadSuiteContainerIsReplacedByTheNextProcess(t *testing.T) {
	f := newFakeEngine()
	a, b := twoProcesses(t, f)
	first, err := a.Get(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	f.kill(first.ID)
	second, err := b.Get(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if second.ID == first.ID {
		t.Error("a dead container was adopted")
	}
}

func TestAdoptionRefusesAnotherDefinition(t *testing.T) {
	f := newFakeEngine()
	a, _ := twoProcesses(t, f)
	if _, err := a.Get(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	other, err := newEnvironment(Config{Suite: "shop"}.withDefaults(), f, []Service{Generic("web", "example.com/web:2", WithPort(8080), WithReady(running(f)))})
	if err != nil {
		t.Fatal(err)
	}
	_, err = other.Get(context.Background(), "web")
	if err == nil || !strings.Contains(err.Error(), "another definition") || !strings.Contains(err.Error(), "CLEANROOM_SUITE") {
		t.Errorf("adopting a container of another definition: %v", err)
	}
}

func TestForeignPodIsNotAdopted(t *testing.T) {
	f := newFakeEngine()
	if _, err := f.CreatePod(context.Background(), podman.PodSpec{Name: "cleanroom-shop", Labels: map[string]string{"app": "mine"}}); err != nil {
		t.Fatal(err)
	}
	a, _ := twoProcesses(t, f)
	_, err := a.Get(context.Background(), "web")
	if err == nil || !strings.Contains(err.Error(), "is not this suite's") || !strings.Contains(err.Error(), "podman pod rm -f cleanroom-shop") {
		t.Errorf("a pod of ours by name but not by labels: %v", err)
	}
}

func TestRemoteEngineAddresses(t *testing.T) {
	e, _, _ := testEnv(t, Config{BindAddress: "0.0.0.0"}, Postgres())
	info := &podman.PodInfo{ID: "p", Name: "n", Labels: map[string]string{}, Ports: map[string]podman.HostAddr{"5432/tcp": {IP: "0.0.0.0", Port: 40001}}}
	for _, tc := range []struct {
		uri, host string
	}{
		{"unix:///run/podman/podman.sock", "127.0.0.1"},
		{"ssh://me@127.0.0.1:2222/run/podman/podman.sock", "127.0.0.1"},
		{"ssh://me@db-host.example:22/run/podman/podman.sock", "db-host.example"},
		{"tcp://10.1.2.3:8888", "10.1.2.3"},
	} {
		e.endpoint = podman.Endpoint{URI: tc.uri}
		p, err := e.podFromInfo(info)
		if err != nil || p.host != tc.host || p.ports[5432] != 40001 {
			t.Errorf("%s: host %q port %d, %v; want %s", tc.uri, p.host, p.ports[5432], err, tc.host)
		}
	}
	// Ports bound to one address of the remote host are reached there.
	info.Ports["5432/tcp"] = podman.HostAddr{IP: "10.9.9.9", Port: 40001}
	e.endpoint = podman.Endpoint{URI: "ssh://me@db-host.example/run/podman/podman.sock"}
	if p, _ := e.podFromInfo(info); p.host != "10.9.9.9" {
		t.Errorf("bound to 10.9.9.9: host %q", p.host)
	}
}

func TestRemoteEngineWithLoopbackBindingIsRefused(t *testing.T) {
	t.Setenv("CONTAINER_HOST", "")
	_, err := New(context.Background(), Config{Connection: "ssh://me@db-host.example/run/podman/podman.sock"}, Postgres())
	if err == nil || !strings.Contains(err.Error(), "bind_address") || !strings.Contains(err.Error(), "db-host.example") {
		t.Errorf("a remote engine with ports on its loopback: %v", err)
	}
}

// newWithFake is New on the fake engine f, as if it were reached at uri,
// with reapers not started.
func newWithFake(t *testing.T, f *fakeEngine, uri string, cfg Config, services ...Service) *Environment {
	t.Helper()
	f.uri = uri
	oldDial, oldSpawn := dialEngine, spawnReaperHook
	dialEngine = func(context.Context, string) (engine, error) { return endpointEngine{f}, nil }
	spawnReaperHook = func(*Environment) error { return nil }
	t.Cleanup(func() { dialEngine, spawnReaperHook = oldDial, oldSpawn })
	e, err := New(context.Background(), cfg, services...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

// Where no lease can be taken (the lease directory is unusable, or the
// platform lacks flock), a process must not share the suite pod by name:
// its Close would remove it under the others. It keeps a pod of its own,
// and says so on stderr, once.
func TestWithoutALeaseAProcessKeepsAPodOfItsOwn(t *testing.T) {
	rt := t.TempDir()
	if err := os.Symlink(t.TempDir(), filepath.Join(rt, "cleanroom")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_RUNTIME_DIR", rt)
	var out strings.Builder
	oldStderr := stderr
	stderr = &out
	t.Cleanup(func() { stderr = oldStderr })

	f := newFakeEngine()
	svc := func() Service { return Generic("web", "example.com/web:1", WithPort(8080), WithReady(running(f))) }
	a := newWithFake(t, f, "unix:///fake/podman.sock", Config{Suite: "shop"}, svc())
	b := newWithFake(t, f, "unix:///fake/podman.sock", Config{Suite: "shop"}, svc())
	ca, err := a.Get(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	cb, err := b.Get(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if ca.PodName == cb.PodName {
		t.Fatalf("both processes use pod %s without a lease", ca.PodName)
	}
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.InspectContainer(context.Background(), cb.ID); err != nil {
		t.Errorf("the first Close removed the other process's container: %v", err)
	}
	if _, err := f.InspectPod(context.Background(), ca.PodName); err == nil {
		t.Errorf("Close left its own pod %s", ca.PodName)
	}
	msg := out.String()
	if strings.Count(msg, "cannot share the suite's pod") != 1 || !strings.Contains(msg, "symbolic link") {
		t.Errorf("stderr, want one notice naming the cause:\n%s", msg)
	}
}

// A container another process left (kept warm, or another package's) is
// checked against max_container_reuse_time when adopted, too.
func TestAdoptedContainerOlderThanTheReuseTimeIsReplaced(t *testing.T) {
	f := newFakeEngine()
	a, b := twoProcesses(t, f)
	ca, err := a.Get(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.containers[ca.ID].created = time.Now().Add(-2 * time.Hour) // older than the default hour
	f.mu.Unlock()
	out := captureStderr(t)
	cb, err := b.Get(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if cb.ID == ca.ID {
		t.Fatalf("a container 2h old was adopted (max_container_reuse_time %s)", b.cfg.MaxContainerReuseTime)
	}
	if !strings.Contains(out.String(), "more than max_container_reuse_time") {
		t.Errorf("the replacement was not said on stderr:\n%s", out)
	}
}
