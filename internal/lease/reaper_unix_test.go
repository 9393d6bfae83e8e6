//go:build unix

package lease

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// Asking whether a reaper is alive (ps, gc, every test process) leaves no
// lock file behind once the reaper has tidied up.
func TestReaperAliveLeavesNoFile(t *testing.T) {
	files := Files{Dir: t.TempDir(), Pod: "cleanroom-x"}
	if files.ReaperAlive() {
		t.Fatal("a reaper is alive with no lock file")
	}
	if _, err := os.Stat(files.reaperLock()); !os.IsNotExist(err) {
		t.Errorf("ReaperAlive made %s: %v", files.reaperLock(), err)
	}
}

// A reaper starting while someone asks whether one is alive (the question
// holds the lock for an instant) still takes the lock: it does not leave
// the suite without a reaper, thinking another holds it.
func TestNewReaperWaitsOutAQuestion(t *testing.T) {
	files := Files{Dir: t.TempDir(), Pod: "cleanroom-x"}
	asker, err := flockFile(files.reaperLock(), syscall.LOCK_SH, true)
	if err != nil || asker == nil {
		t.Fatalf("lock: %v", err)
	}
	time.AfterFunc(50*time.Millisecond, func() { asker.Close() })
	lk, err := files.holdReaperLock()
	if err != nil || lk == nil {
		t.Fatalf("the new reaper gave up its lock to a question: %v", err)
	}
	lk.Close()

	// A real reaper holds it for good: the second one gives up.
	first, err := files.holdReaperLock()
	if err != nil || first == nil {
		t.Fatalf("lock: %v", err)
	}
	defer first.Close()
	if second, err := files.holdReaperLock(); err != nil || second != nil {
		t.Errorf("a second reaper took the lock of a live one: %v", err)
	}
}

// gc finds the reaper before it removes the pod; the reaper may see the
// pod go and end on its own before gc asks it to. That reaper is still
// reported, and End does not fail.
func TestReaperThatEndedByItselfIsReported(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	const uri, pod = "unix:///run/podman/podman.sock", "cleanroom-x"
	dir, err := EngineDir(uri)
	if err != nil {
		t.Fatal(err)
	}
	files := Files{Dir: dir, Pod: pod}
	lk, err := files.holdReaperLock()
	if err != nil || lk == nil {
		t.Fatalf("lock: %v", err)
	}
	const pid = 1 << 22 // above pid_max's default: no process to signal
	if err := os.WriteFile(files.reaperLock(), []byte("pid 4194304\nwindow 1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := FindReaper(uri, pod)
	if err != nil || !r.Alive || r.PID != pid {
		t.Fatalf("FindReaper: %+v, %v; want alive, pid %d", r, err, pid)
	}
	lk.Close() // it saw the pod go, and ended
	if err := r.End(5 * time.Second); err != nil {
		t.Errorf("End: %v", err)
	}

	none, err := FindReaper(uri, "cleanroom-y")
	if err != nil || none.Alive {
		t.Fatalf("FindReaper of a suite without a reaper: %+v, %v", none, err)
	}
	if err := none.End(time.Second); err != nil {
		t.Errorf("End without a reaper: %v", err)
	}
}
