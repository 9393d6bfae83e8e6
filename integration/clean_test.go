package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// localPodman is the podman command of this machine, as a local engine
// (CONTAINER_HOST, set where the suite runs against another engine, would
// make it a remote client).
func localPodman(args ...string) *exec.Cmd {
	cmd := exec.Command("podman", args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CONTAINER_HOST=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}

// privateEngine starts a Podman API service of this machine's podman with
// its own storage, whichever engine the suite runs against, so that a
// test can remove "everything labelled" without touching the objects of
// other tests running at the same time. It returns the service's URI; the
// service and its storage go when the test ends.
func privateEngine(t *testing.T, flags ...string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cleanroom-engine-")
	if err != nil {
		t.Fatal(err)
	}
	uri := "unix://" + filepath.Join(dir, "podman.sock")
	global := []string{"--storage-driver", "vfs", "--root", filepath.Join(dir, "root"),
		"--runroot", filepath.Join(dir, "run"), "--tmpdir", filepath.Join(dir, "tmp")}
	global = append(global, flags...)
	var logs bytes.Buffer
	cmd := localPodman(append(global, "system", "service", "--time=0", uri)...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a private podman service: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		// The engine's storage belongs to sub-uids when rootless.
		_ = localPodman(append(global, "unshare", "rm", "-rf", dir)...).Run()
		_ = os.RemoveAll(dir)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		c, err := podman.Connect(ctx, podman.Options{URI: uri})
		if err == nil {
			c.Close()
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("private podman service did not answer: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The busybox image, for containers outside pods.
	save := localPodman("save", "-q", busyboxImage)
	load := exec.Command("podman", "--url", uri, "load", "-q")
	pipe, _ := save.StdoutPipe()
	load.Stdin = pipe
	if err := save.Start(); err != nil {
		t.Fatal(err)
	}
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("load %s into the private engine: %v\n%s", busyboxImage, err, out)
	}
	if err := save.Wait(); err != nil {
		t.Fatalf("save %s: %v", busyboxImage, err)
	}
	return uri
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "Makefile")); err != nil {
		t.Fatalf("repository root not found: %v", err)
	}
	return root
}

func TestMakeCleanRemovesOnlyLabelledObjects(t *testing.T) {
	t.Parallel()
	uri := privateEngine(t)
	ctx := context.Background()
	c := connectTo(t, uri)

	// Labelled: a pod with a container, and a container on its own.
	if _, err := c.CreatePod(ctx, podman.PodSpec{Name: "labelled-pod"}); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []podman.ContainerSpec{
		{Name: "labelled-in-pod", Image: busyboxImage, Pod: "labelled-pod"},
		{Name: "labelled-alone", Image: busyboxImage},
	} {
		if _, err := c.CreateContainer(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	// Unlabelled decoys, made the way a user would, with the podman CLI.
	for _, args := range [][]string{
		{"pod", "create", "--name", "user-pod"},
		{"create", "--name", "user-container", busyboxImage},
		{"create", "--name", "user-in-pod", "--pod", "user-pod", busyboxImage},
	} {
		if out, err := exec.Command("podman", append([]string{"--url", uri}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("podman %v: %v\n%s", args, err, out)
		}
	}

	dry := exec.Command("make", "-s", "-C", repoRoot(t), "clean", "CLEAN_FLAGS=--dry-run")
	dry.Env = append(os.Environ(), "CONTAINER_HOST="+uri)
	out, err := dry.CombinedOutput()
	if err != nil {
		t.Fatalf("make clean --dry-run: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "would remove pod labelled-pod") || !strings.Contains(string(out), "would remove container labelled-alone") {
		t.Errorf("dry run does not list what it would remove:\n%s", out)
	}
	before := names(t, c)

	clean := exec.Command("make", "-s", "-C", repoRoot(t), "clean")
	clean.Env = append(os.Environ(), "CONTAINER_HOST="+uri)
	out, err = clean.CombinedOutput()
	if err != nil {
		t.Fatalf("make clean: %v\n%s", err, out)
	}
	t.Logf("make clean:\n%s", out)

	after := names(t, c)
	var want []string
	for _, n := range before {
		if strings.HasPrefix(n, "user-") {
			want = append(want, n)
		}
	}
	if diff := cmp.Diff(want, after); diff != "" {
		t.Errorf("after make clean (-want +got); before: %v\n%s", before, diff)
	}
	if len(want) != 3 {
		t.Errorf("decoys before clean: %v, want 3", want)
	}
}

// names lists the pods and (non-infra) containers of the engine.
func names(t *testing.T, c *podman.Client) []string {
	t.Helper()
	ctx := context.Background()
	pods, err := c.ListPods(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	cts, err := c.ListContainers(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	for _, ct := range cts {
		if !ct.IsInfra {
			out = append(out, strings.Join(ct.Names, ","))
		}
	}
	slices.Sort(out)
	return out
}

// make test's leak check removes only what its own run made: another
// project's pods (a kept-warm suite, say) are left alone and not counted.
func TestCleanOfOneRunLeavesOtherRunsAlone(t *testing.T) {
	t.Parallel()
	uri := privateEngine(t)
	ctx := context.Background()
	c := connectTo(t, uri)
	run := func(id string) map[string]string { return map[string]string{labels.RunID: id} }
	for name, l := range map[string]map[string]string{
		"this-run":     run("make-1"),
		"this-run-sub": run("make-1/rebuild-2"), // a test that named a run of its own under it
		"other-run":    run("make-10"),
		"no-run":       nil, // made by an older library
	} {
		if _, err := c.CreatePod(ctx, podman.PodSpec{Name: name, Labels: l}); err != nil {
			t.Fatal(err)
		}
	}
	for _, spec := range []podman.ContainerSpec{
		{Name: "this-run-alone", Image: busyboxImage, Labels: run("make-1")},
		{Name: "other-run-alone", Image: busyboxImage, Labels: run("make-10")},
		{Name: "this-run-in-other-pod", Image: busyboxImage, Pod: "other-run", Labels: run("make-1")},
	} {
		if _, err := c.CreateContainer(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"CONTAINER_HOST=" + uri}
	out, code := runCLI(t, env, "clean", "--dry-run", "--run", "make-1")
	for _, want := range []string{"would remove pod this-run ", "would remove pod this-run-sub ", "would remove container this-run-alone"} {
		if !strings.Contains(out, want) {
			t.Errorf("clean --dry-run --run make-1 (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
	for _, not := range []string{"other-run", "no-run", "this-run-in-other-pod"} {
		if strings.Contains(out, not) {
			t.Errorf("clean --dry-run --run make-1 lists %s:\n%s", not, out)
		}
	}
	if out, code := runCLI(t, env, "clean", "--run", "make-1"); code != 0 {
		t.Fatalf("clean --run make-1: exit %d\n%s", code, out)
	}
	want := []string{"no-run", "other-run", "other-run-alone", "this-run-in-other-pod"}
	if diff := cmp.Diff(want, names(t, c)); diff != "" {
		t.Errorf("after clean --run make-1 (-want +got):\n%s", diff)
	}
}
