// Package runid names the run a test process belongs to: every test binary
// that one `go test ./...` starts gets the same name, a later `go test`
// another. CLEANROOM_REBUILD=1 uses it to rebuild templates and snapshots
// once per run, not once per package.
package runid

import (
	"fmt"
	"os"
	"strings"
)

// Env overrides the run's name (for a harness that starts test binaries
// itself).
const Env = "CLEANROOM_RUN_ID"

// ID is the name of this process's run: CLEANROOM_RUN_ID, else the parent
// process's PID and start time (go test starts every test binary of a run
// itself, and a PID alone may come back).
func ID() string {
	if v := os.Getenv(Env); v != "" {
		return v
	}
	ppid := os.Getppid()
	return fmt.Sprintf("%d-%s", ppid, startTime(ppid))
}

// startTime is a process's start time in clock ticks since boot (field 22
// of /proc/PID/stat), "" where that cannot be read.
func startTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name (field 2) may hold spaces; it ends at the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return ""
	}
	return fields[19] // field 22 of the whole line
}
