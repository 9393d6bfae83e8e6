package integration

import (
	"context"
	"maps"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// make test runs one at a time through scripts/one-at-a-time.sh. A daemon
// that a run leaves behind (the Podman API service, the registry) must not
// hold the lock: a second make test once waited for it forever.
func TestOneAtATimeLockIsNotInheritedByDaemons(t *testing.T) {
	t.Parallel()
	script := filepath.Join(repoRoot(t), "scripts", "one-at-a-time.sh")
	lock := filepath.Join(t.TempDir(), "lock")

	// The first run starts a daemon, in a session of its own as the set-up
	// scripts start theirs, and ends.
	out, err := exec.Command(script, lock, "sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!").Output()
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("first run printed %q, want the daemon's pid", out)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })

	// The second run goes ahead while the daemon lives.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err = exec.CommandContext(ctx, script, lock, "echo", "second run").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "second run") {
		t.Fatalf("second run while the first one's daemon lives: %v (%v)\n%s", err, ctx.Err(), out)
	}
	if strings.Contains(string(out), "waiting") {
		t.Errorf("the second run waited:\n%s", out)
	}
}

// make demo ends by saying what it leaves on the engine and when it goes:
// the suite pod, for its grace period, with the reaper that removes it (or
// nothing, when the reaper was quicker than the demo's last look). Only a
// pod that no reaper watches is reported as left over, and only one the
// demo made: other test processes' pods on the engine are theirs.
func TestDemoSaysWhenItsPodGoes(t *testing.T) {
	t.Parallel()
	// A pod that cleanroom gc calls left over (a per-test pod whose process
	// is gone), made by another run: not the demo's to report.
	other := testLabels(t)
	maps.Copy(other, map[string]string{labels.Role: "per-test", labels.Suite: "not-the-demo", labels.RunID: "another-run"})
	decoy := newPod(t, connect(t), podman.PodSpec{Labels: other})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot(t), "scripts", "demo.sh"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make demo: %v\n%s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "tests passed in") {
		t.Errorf("the demo does not say how its tests went:\n%s", s)
	}
	kept := []string{
		"Left on the engine for a next run to reuse (cleanroom ps):",
		"(reaper ",
		"Its reaper removes each pod at the time shown under LEASES",
		"Nothing is left that no reaper watches.",
	}
	switch {
	case strings.Contains(s, "No cleanroom pod or container is left on the engine."):
		t.Logf("the pod was gone before the demo looked:\n%s", s)
	default:
		for _, want := range kept {
			if !strings.Contains(s, want) {
				t.Errorf("the demo's output lacks %q:\n%s", want, s)
			}
		}
	}
	// (cleanroom ps lists every pod on the engine, the decoy too.)
	if strings.Contains(s, "would remove pod "+decoy) {
		t.Errorf("the demo reports another run's pod %s as left over:\n%s", decoy, s)
	}
	if strings.Contains(s, "no reaper to remove it") {
		t.Errorf("the demo reports a leak:\n%s", s)
	}
}
