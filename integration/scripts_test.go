package integration

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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
