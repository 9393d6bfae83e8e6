// Package faults makes the failure paths happen against a real Podman
// service and real Postgres and Redis containers: the API service restarted
// mid-suite, a service container killed, the suite pod removed from
// outside, many processes attaching at once, test binaries and the reaper
// SIGKILLed, cancelled contexts, an unusable lease directory, keep-warm then
// gc. Every scenario ends with what its tests should do done, nothing of its
// suite left after the grace period, and the unlabelled decoys made to look
// like its objects untouched.
//
// The test processes of the scenarios are this test binary re-executed in a
// helper mode (see helper.go), so no scenario waits for `go test` to
// compile anything.
package faults

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode))
	}
	os.Exit(m.Run())
}

// busyboxImage is the small image of the decoys (setup-podman.sh builds it).
var busyboxImage = envOr("CLEANROOM_BUSYBOX_IMAGE", "localhost/cleanroom/busybox:latest")

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func connect(t testing.TB) *podman.Client {
	t.Helper()
	c, err := podman.Connect(context.Background(), podman.Options{})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newSuite names a scenario's suite; nothing else of make test shares it.
func newSuite(t *testing.T, name string) string {
	return fmt.Sprintf("flt-%s-%d", name, time.Now().UnixNano()%1e8)
}

// decoys makes a pod and a container that look like the suite's (names and
// io.cleanroom.* labels) but lack io.cleanroom.managed, and checks when the
// test ends that they are still there: no sweep, reaper or gc may touch an
// object without that label.
func decoys(t *testing.T, suite string) {
	t.Helper()
	pod := "cleanroom-" + suite + "-dec0y000-t1"
	ctr := "cleanroom-" + suite + "-postgres-dec0y"
	labels := []string{"--label", labels.Suite + "=" + suite, "--label", labels.Run + "=dec0y000",
		"--label", labels.Role + "=per-test", "--label", labels.Service + "=postgres"}
	for _, args := range [][]string{
		append([]string{"pod", "create", "--name", pod}, labels...),
		append(append([]string{"create", "--name", ctr}, labels...), busyboxImage, "true"),
	} {
		if out, err := exec.Command("podman", args...).CombinedOutput(); err != nil {
			t.Fatalf("podman %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() {
		// Removed however the checks below end.
		defer func() {
			_ = exec.Command("podman", "pod", "rm", "-f", pod).Run()
			_ = exec.Command("podman", "rm", "-f", ctr).Run()
		}()
		c := connect(t)
		if _, err := c.InspectPod(context.Background(), pod); err != nil {
			t.Errorf("the unlabelled decoy pod %s did not survive: %v", pod, err)
		}
		if _, err := c.InspectContainer(context.Background(), ctr); err != nil {
			t.Errorf("the unlabelled decoy container %s did not survive: %v", ctr, err)
		}
	})
}

// waitGone waits until nothing labelled with suite is left, failing after
// limit (and then removing what is left, so that make test's leak check
// reports the scenario, not a later one).
func waitGone(t *testing.T, suite string, limit time.Duration) {
	t.Helper()
	c := connect(t)
	labels := map[string]string{labels.Suite: suite, podman.LabelManaged: "true"}
	var pods []podman.PodSummary
	var cts []podman.ContainerSummary
	for deadline := time.Now().Add(limit); ; time.Sleep(100 * time.Millisecond) {
		var err error
		if pods, err = c.ListPods(context.Background(), labels); err != nil {
			t.Fatal(err)
		}
		if cts, err = c.ListContainers(context.Background(), labels); err != nil {
			t.Fatal(err)
		}
		if len(pods) == 0 && len(cts) == 0 {
			return
		}
		if time.Now().After(deadline) {
			break
		}
	}
	var names []string
	for _, p := range pods {
		names = append(names, "pod "+p.Name)
		_ = c.RemovePod(context.Background(), p.ID)
	}
	for _, ct := range cts {
		names = append(names, "container "+strings.Join(ct.Names, ","))
		_ = c.RemoveContainer(context.Background(), ct.ID)
	}
	t.Errorf("suite %s: still there %s after the test: %s", suite, limit, strings.Join(names, ", "))
}

// proc is a helper process: this test binary in a helper mode.
type proc struct {
	cmd    *exec.Cmd
	stdin  interface{ Close() error }
	lines  chan string // its stdout, line by line; closed at its end
	mu     sync.Mutex
	all    []string
	stderr strings.Builder
}

// start runs the helper mode with the suite's environment plus extra.
func start(t *testing.T, mode, suite string, extra ...string) *proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+mode, "CLEANROOM_SUITE="+suite), extra...)
	p := &proc{cmd: cmd, lines: make(chan string, 1024)}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdin = stdin
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &lockedWriter{mu: &p.mu, b: &p.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.all = append(p.all, sc.Text())
			p.mu.Unlock()
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	return p
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// output is what the helper printed so far, stdout then stderr.
func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.all, "\n") + "\n--- stderr:\n" + p.stderr.String()
}

// waitFor waits for a line starting with prefix and returns it.
func (p *proc) waitFor(t *testing.T, prefix string, limit time.Duration) string {
	t.Helper()
	timeout := time.After(limit)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("the helper ended before it said %q:\n%s", prefix, p.output())
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-timeout:
			t.Fatalf("the helper did not say %q within %s:\n%s", prefix, limit, p.output())
		}
	}
}

// finish closes the helper's stdin (a holding helper then ends its tests)
// and waits for it to exit 0.
func (p *proc) finish(t *testing.T) {
	t.Helper()
	p.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		for range p.lines {
		}
		if err != nil {
			t.Errorf("helper: %v\n%s", err, p.output())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("the helper did not end:\n%s", p.output())
	}
}

// kill SIGKILLs the helper and reaps it.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// creations counts, from the engine's events since since, the pods and
// service containers of suite that were created (snapshot builders left
// out: they are not services).
func creations(t *testing.T, c *podman.Client, suite string, since time.Time) map[string]int {
	t.Helper()
	evs, err := c.Events(context.Background(), since, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range evs {
		if e.Action != "create" {
			continue
		}
		switch {
		case e.Type == "pod" && strings.HasPrefix(e.Name(), "cleanroom-"+suite) && !strings.Contains(e.Name(), "-snap-"):
			out["pod"]++
		case e.Type == "container" && e.Actor.Attributes[labels.Suite] == suite && e.Actor.Attributes[labels.Service] != "" &&
			e.Actor.Attributes[labels.Role] != "snapshot-builder":
			out["container "+e.Actor.Attributes[labels.Service]]++
		}
	}
	return out
}
