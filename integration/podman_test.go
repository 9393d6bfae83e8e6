package integration

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

func TestPodsCreatedConcurrentlyGetDistinctHostPorts(t *testing.T) {
	t.Parallel()
	c := connect(t)
	ctx := context.Background()

	names := []string{name("port-a"), name("port-b")}
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.CreatePod(ctx, podman.PodSpec{Name: n, Labels: testLabels(t), Ports: []podman.Port{{ContainerPort: 6379}}})
		}()
	}
	wg.Wait()
	for i, n := range names {
		if errs[i] != nil {
			t.Fatalf("create pod %s: %v", n, errs[i])
		}
		t.Cleanup(func() { _ = c.RemovePod(context.Background(), n) })
	}

	var ports []uint16
	for _, n := range names {
		info, err := c.InspectPod(ctx, n)
		if err != nil {
			t.Fatalf("inspect pod %s: %v", n, err)
		}
		addr, ok := info.HostPort(6379)
		if !ok {
			t.Fatalf("pod %s publishes no host port for 6379: %+v", n, info.Ports)
		}
		if addr.IP != "127.0.0.1" || addr.Port == 0 {
			t.Errorf("pod %s: 6379/tcp published on %s:%d, want 127.0.0.1 and a picked port", n, addr.IP, addr.Port)
		}
		ports = append(ports, addr.Port)
	}
	if ports[0] == ports[1] {
		t.Errorf("both pods got host port %d", ports[0])
	}
}

func TestCreatePodWithTakenNameIsConflict(t *testing.T) {
	t.Parallel()
	c := connect(t)
	pod := newPod(t, c, podman.PodSpec{})
	_, err := c.CreatePod(context.Background(), podman.PodSpec{Name: pod, Labels: testLabels(t)})
	if !errors.Is(err, podman.ErrConflict) {
		t.Fatalf("second create of pod %s: got %v, want ErrConflict", pod, err)
	}
	if !strings.Contains(err.Error(), pod) {
		t.Errorf("error %q does not name the pod", err)
	}
}

func TestCreateContainerWithTakenNameIsConflict(t *testing.T) {
	t.Parallel()
	c := connect(t)
	ctx := context.Background()
	pod := newPod(t, c, podman.PodSpec{})
	spec := podman.ContainerSpec{Name: pod + "-dup", Image: busyboxImage, Pod: pod, Labels: testLabels(t), Command: []string{"true"}}
	if _, err := c.CreateContainer(ctx, spec); err != nil {
		t.Fatalf("first create: %v", err)
	}
	// Same name as a container (Podman 4: HTTP 500 "name is already in use").
	if _, err := c.CreateContainer(ctx, spec); !errors.Is(err, podman.ErrConflict) {
		t.Errorf("second create of container: got %v, want ErrConflict", err)
	}
	// Same name as a pod: Podman 4 keeps pods and containers in one name
	// space; Podman 5 in two.
	spec.Name = pod
	_, err := c.CreateContainer(ctx, spec)
	if strings.HasPrefix(c.APIVersion(), "4.") && !errors.Is(err, podman.ErrConflict) {
		t.Errorf("container named like a pod on Podman %s: got %v, want ErrConflict", c.APIVersion(), err)
	}
	if !strings.HasPrefix(c.APIVersion(), "4.") && err != nil {
		t.Errorf("container named like a pod on Podman %s: %v", c.APIVersion(), err)
	}
}

func TestInspectRemovedContainerIsNotFound(t *testing.T) {
	t.Parallel()
	c := connect(t)
	ctx := context.Background()
	id, err := c.CreateContainer(ctx, podman.ContainerSpec{Name: name("gone"), Image: busyboxImage, Labels: testLabels(t), Command: []string{"true"}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := c.InspectContainer(ctx, id); err != nil {
		t.Fatalf("inspect before removal: %v", err)
	}
	if err := c.RemoveContainer(ctx, id); err != nil {
		t.Fatalf("remove: %v", err)
	}
	_, err = c.InspectContainer(ctx, id)
	if !errors.Is(err, podman.ErrNotFound) {
		t.Fatalf("inspect after removal: got %v, want ErrNotFound", err)
	}
	if err := c.RemoveContainer(ctx, id); !errors.Is(err, podman.ErrNotFound) {
		t.Errorf("second remove: got %v, want ErrNotFound", err)
	}
	if err := c.RemovePod(ctx, name("never")); !errors.Is(err, podman.ErrNotFound) {
		t.Errorf("remove of a pod that never was: got %v, want ErrNotFound", err)
	}
}

// RemoveContainer takes the container's anonymous volumes with it: the
// MariaDB image declares VOLUME /var/lib/mysql, so a container of it made
// without a tmpfs there gets one. (Podman 4.3's libpod API ignores the
// "v" parameter that later versions read and wants "volumes": with "v"
// alone, each such container left a volume behind.)
func TestRemoveContainerTakesItsAnonymousVolumes(t *testing.T) {
	t.Parallel()
	c := connect(t)
	raw := rawAPI(t, c)
	ctx := context.Background()
	id, err := c.CreateContainer(ctx, podman.ContainerSpec{Name: name("vol"), Image: mariadbImage, Labels: testLabels(t)})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	var info struct {
		Mounts []struct{ Type, Name, Destination string }
	}
	if code := raw(http.MethodGet, "/libpod/containers/"+id+"/json", &info); code != http.StatusOK {
		t.Fatalf("inspect: HTTP %d", code)
	}
	var vols []string
	for _, m := range info.Mounts {
		if m.Type == "volume" && m.Destination == "/var/lib/mysql" {
			vols = append(vols, m.Name)
		}
	}
	if len(vols) != 1 {
		t.Fatalf("mounts of a container of %s: %+v; want one anonymous volume on /var/lib/mysql", mariadbImage, info.Mounts)
	}
	if code := raw(http.MethodGet, "/libpod/volumes/"+vols[0]+"/exists", nil); code != http.StatusNoContent {
		t.Fatalf("volume %s before removal: HTTP %d, want 204", vols[0], code)
	}
	if err := c.RemoveContainer(ctx, id); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if code := raw(http.MethodGet, "/libpod/volumes/"+vols[0]+"/exists", nil); code != http.StatusNotFound {
		raw(http.MethodDelete, "/libpod/volumes/"+vols[0]+"?force=true", nil)
		t.Errorf("volume %s after its container's removal: HTTP %d, want 404 (it was left behind)", vols[0], code)
	}
}

// rawAPI calls the engine's libpod API directly, for what the client does
// not offer; it decodes a JSON answer into out (when not nil) and returns
// the status code. Only for an engine on a unix socket.
func rawAPI(t *testing.T, c *podman.Client) func(method, path string, out any) int {
	t.Helper()
	sock, ok := strings.CutPrefix(c.Endpoint().URI, "unix://")
	if !ok {
		t.Skipf("the engine is at %s; this test reads its API over a unix socket", c.Endpoint().URI)
	}
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	t.Cleanup(hc.CloseIdleConnections)
	return func(method, path string, out any) int {
		t.Helper()
		req, err := http.NewRequest(method, "http://podman/v4.0.0"+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		if out != nil && resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
		}
		return resp.StatusCode
	}
}

// FollowLogs hands over each line as it is written and returns when the
// container stops.
func TestFollowLogsUntilTheContainerStops(t *testing.T) {
	t.Parallel()
	c := connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := c.CreateContainer(ctx, podman.ContainerSpec{Name: name("follow"), Image: busyboxImage, Labels: testLabels(t),
		Command: []string{"sh", "-c", "echo one; sleep 0.3; echo two >&2; sleep 0.3; printf three"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.RemoveContainer(context.Background(), id) })
	if err := c.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := c.FollowLogs(ctx, id, func(line string) { got = append(got, line) }); err != nil {
		t.Fatalf("FollowLogs: %v", err)
	}
	if diff := cmp.Diff([]string{"one", "two", "three"}, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
	if info, err := c.InspectContainer(ctx, id); err != nil || info.State.Running {
		t.Errorf("FollowLogs returned while the container runs: %+v, %v", info, err)
	}
}

func TestContainerLifecycleExecAndLogs(t *testing.T) {
	t.Parallel()
	c := connect(t)
	ctx := context.Background()
	pod := newPod(t, c, podman.PodSpec{})
	id := startIn(t, c, pod, podman.ContainerSpec{
		Image:   busyboxImage,
		Env:     map[string]string{"GREETING": "hello from env"},
		Command: []string{"sh", "-c", `for i in 1 2 3 4 5; do echo "line $i"; done; echo "$GREETING" >&2; echo data > /scratch/f; exec sleep 300`},
		Tmpfs:   map[string]string{"/scratch": "rw,size=1m,mode=1777"},
		Timeout: 10 * time.Minute,
	})

	info, err := c.InspectContainer(ctx, id)
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	if !info.State.Running || info.Labels[podman.LabelManaged] != "true" || info.Labels[runLabel] != runID {
		t.Fatalf("container state %+v labels %v: want running, managed, labelled with the run", info.State, info.Labels)
	}
	if info.Timeout != 600*time.Second {
		t.Errorf("run-time limit: got %s, want 600 s", info.Timeout)
	}

	res, err := c.Exec(ctx, id, []string{"sh", "-c", "cat /scratch/f; echo oops >&2; exit 3"})
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	if diff := cmp.Diff(podman.ExecResult{ExitCode: 3, Stdout: []byte("data\n"), Stderr: []byte("oops\n")}, res); diff != "" {
		t.Errorf("exec result (-want +got):\n%s", diff)
	}
	res, err = c.Exec(ctx, id, []string{"true"})
	if err != nil || res.ExitCode != 0 {
		t.Errorf("exec true: %+v, %v", res, err)
	}

	var lines []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if lines, err = c.Logs(ctx, id, 3); err != nil {
			t.Fatalf("logs: %v", err)
		}
		if len(lines) == 3 && lines[2] == "hello from env" {
			break
		}
	}
	if diff := cmp.Diff([]string{"line 4", "line 5", "hello from env"}, lines); diff != "" {
		t.Errorf("last 3 log lines (-want +got):\n%s", diff)
	}

	cts, err := c.ListContainers(ctx, map[string]string{"io.cleanroom.test": t.Name(), runLabel: runID})
	var listed []string
	for _, ct := range cts {
		if !ct.IsInfra { // the pod's infra container carries the pod's labels
			listed = append(listed, ct.ID)
		}
	}
	if err != nil || len(listed) != 1 || listed[0] != id {
		t.Errorf("list by label: %v, %v; want just %s", listed, err, id)
	}
	pods, err := c.ListPods(ctx, map[string]string{"io.cleanroom.test": t.Name(), runLabel: runID})
	if err != nil || len(pods) != 1 || pods[0].Name != pod {
		t.Errorf("list pods by label: %+v, %v; want just %s", pods, err, pod)
	}

	if err := c.StopContainer(ctx, id, time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := c.StopContainer(ctx, id, time.Second); err != nil {
		t.Errorf("stop of a stopped container: %v", err)
	}
	if _, err := c.Exec(ctx, id, []string{"true"}); !errors.Is(err, podman.ErrConflict) {
		t.Errorf("exec in a stopped container: got %v, want ErrConflict", err)
	}
}

func TestPullOfUnavailableImageFailsClearly(t *testing.T) {
	t.Parallel()
	c := connect(t)
	for _, ref := range []string{
		"registry.invalid/cleanroom/none:1",      // a host that does not resolve
		"127.0.0.1:1/cleanroom/none:1",           // nothing listens
		"docker.io/library/postgres:15-bookworm", // no registry is reachable from the test machines
	} {
		t.Run(ref, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			defer cancel()
			var events int
			err := c.Pull(ctx, ref, func(podman.PullEvent) { events++ })
			if err == nil {
				exists, _ := c.ImageExists(context.Background(), ref)
				if exists && strings.HasPrefix(ref, "docker.io") {
					t.Skipf("%s could be pulled: this machine reaches a registry", ref)
				}
				t.Fatalf("pull %s succeeded", ref)
			}
			if !strings.Contains(err.Error(), ref) {
				t.Errorf("error %q does not name the image", err)
			}
			if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
				t.Errorf("pull %s hung until the test's own 45 s deadline instead of failing: %v", ref, err)
			}
			t.Logf("pull %s: %v (%d progress events)", ref, err, events)
		})
	}
}

func TestDeadSocketSaysHowToStartTheService(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // the file stays, nothing listens: a crashed service

	for _, uri := range []string{"unix://" + filepath.Join(dir, "missing.sock"), "unix://" + stale} {
		_, err := podman.Connect(context.Background(), podman.Options{URI: uri})
		if !errors.Is(err, podman.ErrNoService) {
			t.Fatalf("connect %s: got %v, want ErrNoService", uri, err)
		}
		for _, want := range []string{uri, "podman system service", "explicit URI"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error for %s does not say %q:\n%v", uri, want, err)
			}
		}
	}
}
