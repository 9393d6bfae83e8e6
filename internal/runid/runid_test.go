package runid

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestIDIsTheParentsAndStable(t *testing.T) {
	t.Setenv(Env, "")
	id := ID()
	if id != ID() {
		t.Errorf("ID changed between calls")
	}
	if !strings.HasPrefix(id, strconv.Itoa(os.Getppid())+"-") {
		t.Errorf("ID %q does not start with the parent's PID %d", id, os.Getppid())
	}
	if _, err := os.Stat("/proc/self/stat"); err == nil && strings.HasSuffix(id, "-") {
		t.Errorf("ID %q lacks the parent's start time where /proc has it", id)
	}
	t.Setenv(Env, "harness-7")
	if got := ID(); got != "harness-7" {
		t.Errorf("with %s set: %q", Env, got)
	}
}

// Two children of one parent (two test binaries of one go test) share the
// run; a child of another parent does not.
func TestSiblingsShareTheRun(t *testing.T) {
	if os.Getenv("RUNID_CHILD") == "1" {
		os.Stdout.WriteString(ID())
		return
	}
	child := func() string {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSiblingsShareTheRun$")
		cmd.Env = append(os.Environ(), "RUNID_CHILD=1", Env+"=")
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.SplitN(string(out), "\n", 2)[0]
	}
	a, b := child(), child()
	if a != b {
		t.Errorf("two children of one process: runs %q and %q", a, b)
	}
	t.Setenv(Env, "")
	if me := ID(); me == a {
		t.Errorf("this process and its children share run %q", me)
	}
}
