package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

var (
	cliOnce sync.Once
	cliPath string
	cliErr  error
)

// cli builds cmd/cleanroom once per test binary.
func cli(t *testing.T) string {
	t.Helper()
	cliOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cleanroom-cli-")
		if err != nil {
			cliErr = err
			return
		}
		cliPath = filepath.Join(dir, "cleanroom")
		out, err := exec.Command("go", "build", "-o", cliPath, "../cmd/cleanroom").CombinedOutput()
		if err != nil {
			cliErr = err
			t.Logf("%s", out)
		}
	})
	if cliErr != nil {
		t.Fatalf("build cmd/cleanroom: %v", cliErr)
	}
	return cliPath
}

func runCLI(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(cli(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("cleanroom %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

func TestDoctor(t *testing.T) {
	t.Parallel()
	out, code := runCLI(t, nil, "doctor")
	if code != 0 || !strings.HasSuffix(strings.TrimSpace(out), "healthy") {
		t.Errorf("doctor on this machine (exit %d):\n%s", code, out)
	}
	// What it reports is what the engine says of itself, for either
	// generation.
	info, err := connect(t).Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h := info.Host
	mode := "rootful"
	if h.Security.Rootless {
		mode = "rootless"
	}
	wants := []string{
		"socket unix://",
		fmt.Sprintf("Podman %s (API %s), %s, on %s %s", info.Version.Version, info.Version.APIVersion, mode, h.Distribution.Distribution, h.Distribution.Version),
		"network backend " + h.NetworkBackend,
		"OCI runtime " + h.OCIRuntime.Name + " ",
		"cgroup " + h.CgroupVersion,
		h.CgroupManager + " manager",
		"a pod starts and is removed (" + h.OCIRuntime.Name + ")",
		"image " + postgresImage,
	}
	if strings.HasPrefix(info.Version.Version, "5.") {
		// Podman 5 has netavark only, and pasta for rootless networking.
		wants = append(wants, "network backend netavark")
		if h.Security.Rootless {
			wants = append(wants, "rootless networking pasta")
		}
	}
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("doctor does not report %q:\n%s", want, out)
		}
	}

	out, code = runCLI(t, []string{"CONTAINER_HOST=unix:///nonexistent/podman.sock"}, "doctor")
	if code != 1 || !strings.Contains(out, "PROBLEM  no Podman API service answers") || !strings.Contains(out, "podman system service --time=0 unix:///nonexistent/podman.sock") {
		t.Errorf("doctor against a dead socket (exit %d):\n%s", code, out)
	}

	// An engine whose OCI runtime cannot start anything: the trial pod says
	// so, whatever the versions would suggest.
	broken := privateEngine(t, "--runtime", "/bin/false")
	out, code = runCLI(t, []string{"CONTAINER_HOST=" + broken}, "doctor")
	if code != 1 || !strings.Contains(out, "PROBLEM  the engine cannot start a pod here") {
		t.Errorf("doctor against an engine whose runtime fails (exit %d):\n%s", code, out)
	}

	out, code = runCLI(t, []string{"CLEANROOM_POSTGRES_IMAGE=localhost/cleanroom/none:0"}, "doctor")
	if code != 1 || !strings.Contains(out, "image localhost/cleanroom/none:0 (postgres) is not in the engine's store") {
		t.Errorf("doctor with a missing image (exit %d):\n%s", code, out)
	}
	// A Generic service's image, named in the configuration.
	out, code = runCLI(t, []string{"CLEANROOM_OBJECT_STORE_IMAGE=localhost/cleanroom/none:1"}, "doctor")
	if code != 1 || !strings.Contains(out, "image localhost/cleanroom/none:1 (object-store) is not in the engine's store") || !strings.Contains(out, "point CLEANROOM_OBJECT_STORE_IMAGE at that") {
		t.Errorf("doctor with a Generic service's missing image (exit %d):\n%s", code, out)
	}
}

func TestPSShowsSuitesAndLeases(t *testing.T) {
	t.Parallel()
	env, _ := newEnv(t, cleanroom.Config{}, cleanroom.Redis())
	c, err := env.Get(context.Background(), "redis")
	if err != nil {
		t.Fatal(err)
	}
	out, code := runCLI(t, nil, "ps")
	if code != 0 {
		t.Fatalf("ps (exit %d):\n%s", code, out)
	}
	var row string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, c.PodName+" ") {
			row = line
		}
	}
	for _, want := range []string{env.Suite(), "suite", "redis(running)", "1 process(es)", "6379/tcp→" + bindAddress + ":"} {
		if !strings.Contains(row, want) {
			t.Errorf("ps row of %s does not say %q:\n%s", c.PodName, want, out)
		}
	}
}

func TestGCRemovesStaleOnlyAndNeverUnlabelled(t *testing.T) {
	t.Parallel()
	uri := privateEngine(t)
	ctx := context.Background()
	c := connectTo(t, uri)
	me, _ := os.Hostname()
	// A suite pod nobody holds (its suite has no lease files here), a
	// per-test pod of a process that is gone, and one made on another host.
	for _, spec := range []podman.PodSpec{
		{Name: "cleanroom-gone", Labels: map[string]string{labels.Suite: "gone", labels.Role: "suite", labels.Host: me}},
		{Name: "cleanroom-gone-dead0001-t1", Labels: map[string]string{labels.Suite: "gone", labels.Role: "per-test", labels.Run: "dead0001", labels.Host: me}},
		{Name: "cleanroom-elsewhere", Labels: map[string]string{labels.Suite: "elsewhere", labels.Role: "suite", labels.Host: "another-host"}},
	} {
		if _, err := c.CreatePod(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"pod", "create", "--name", "decoy-pod"},
		{"create", "--name", "decoy-container", busyboxImage},
	} {
		if out, err := exec.Command("podman", append([]string{"--url", uri}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("podman %v: %v\n%s", args, err, out)
		}
	}

	out, code := runCLI(t, nil, "--url", uri, "gc")
	if code != 0 {
		t.Fatalf("gc (exit %d):\n%s", code, out)
	}
	got := names(t, c)
	want := []string{"cleanroom-elsewhere", "decoy-container", "decoy-pod"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("after gc: %v, want %v\n%s", got, want, out)
	}

	out, code = runCLI(t, nil, "--url", uri, "gc", "--all", "--dry-run")
	if code != 0 || !strings.Contains(out, "would remove pod cleanroom-elsewhere") || strings.Contains(out, "decoy") {
		t.Errorf("gc --all --dry-run (exit %d):\n%s", code, out)
	}
	if out, code = runCLI(t, nil, "--url", uri, "gc", "--all"); code != 0 {
		t.Fatalf("gc --all (exit %d):\n%s", code, out)
	}
	if got := names(t, c); strings.Join(got, " ") != "decoy-container decoy-pod" {
		t.Errorf("after gc --all: %v; the unlabelled decoys must survive, nothing else", got)
	}

	// gc --snapshots removes snapshot images, and no other image: with
	// --run only those that run built, with --suite only that suite's.
	for _, img := range []struct{ ref, suite, run string }{
		{"localhost/cleanroom-snapshot/gone-web:1", "gone", "run-kept"},
		{"localhost/cleanroom-snapshot/gone-db:1", "gone", "run-a"},
		{"localhost/cleanroom-snapshot/other-db:1", "other", "run-kept"},
	} {
		if _, err := c.Commit(ctx, "decoy-container", img.ref, []string{
			"LABEL " + podman.LabelManaged + "=true", "LABEL " + labels.Snapshot + "=1",
			"LABEL " + labels.Suite + "=" + img.suite, "LABEL " + labels.BuiltIn + "=" + img.run,
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []struct {
		args    []string
		removed string
	}{
		{[]string{"--run", "run-a"}, "localhost/cleanroom-snapshot/gone-db:1"},
		{[]string{"--suite", "other"}, "localhost/cleanroom-snapshot/other-db:1"},
	} {
		out, code = runCLI(t, nil, append([]string{"--url", uri, "gc", "--snapshots"}, step.args...)...)
		if code != 0 || strings.Count(out, "removed snapshot") != 1 || !strings.Contains(out, "removed snapshot "+step.removed) {
			t.Errorf("gc --snapshots %v (exit %d): want only %s removed:\n%s", step.args, code, step.removed, out)
		}
		if ok, _ := c.ImageExists(ctx, step.removed); ok {
			t.Errorf("%s survived gc --snapshots %v", step.removed, step.args)
		}
	}
	if ok, _ := c.ImageExists(ctx, "localhost/cleanroom-snapshot/gone-web:1"); !ok {
		t.Error("gc --snapshots with --run or --suite removed a snapshot of another run and suite")
	}
	out, code = runCLI(t, nil, "--url", uri, "gc", "--snapshots")
	if code != 0 || !strings.Contains(out, "removed snapshot localhost/cleanroom-snapshot/gone-web:1") {
		t.Errorf("gc --snapshots (exit %d):\n%s", code, out)
	}
	if ok, _ := c.ImageExists(ctx, "localhost/cleanroom-snapshot/gone-web:1"); ok {
		t.Error("the snapshot image survived gc --snapshots")
	}
	if ok, _ := c.ImageExists(ctx, busyboxImage); !ok {
		t.Error("gc --snapshots removed an image that is not a snapshot")
	}
}

// The command finds the engine as the library does, cleanroom.toml's
// connection included.
func TestCLIUsesTheConnectionOfCleanroomToml(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock := filepath.Join(dir, "nothing-here.sock")
	for name, text := range map[string]string{
		"go.mod":         "module example.com/m\n",
		"cleanroom.toml": "[cleanroom]\nconnection = \"unix://" + sock + "\"\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(cli(t), "ps")
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CLEANROOM_CONNECTION=") && !strings.HasPrefix(kv, "CONTAINER_HOST=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), sock) {
		t.Errorf("ps with cleanroom.toml's connection %s: %v\n%s", sock, err, out)
	}
}
