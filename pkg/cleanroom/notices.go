package cleanroom

import (
	"fmt"
	"sync"
)

// Notices are the few events a user must hear of whatever the log level,
// because they change what the tests run against or how fast: a shared
// container replaced, a fallback to per-test containers, a process that
// cannot share the suite's pod. They go to stderr (where `go test` shows
// them for a failing package, or with -v), each distinct line once per
// process.
var (
	noticesMu sync.Mutex
	noticed   = map[string]bool{}
)

func notice(format string, args ...any) {
	msg := fmt.Sprintf("cleanroom: "+format, args...)
	noticesMu.Lock()
	defer noticesMu.Unlock()
	if noticed[msg] {
		return
	}
	noticed[msg] = true
	fmt.Fprintln(stderr, msg)
}

// noteReplacement records that service's container old is replaced, and
// why.
func (e *Environment) noteReplacement(service string, old *Container, reason string) {
	e.log.Warn("cleanroom: replacing container", "service", service, "container", old.Name, "reason", reason)
	e.replaced.Add(1)
	notice("%s: replacing container %s: %s", service, old.Name, reason)
}
