package cleanroom

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

// TestingM is what Main needs of *testing.M.
type TestingM interface {
	// Run runs the tests and returns the exit code, as (*testing.M).Run.
	Run() int
}

// TB is what the per-test helpers need of *testing.T, *testing.B and
// *testing.F: the same as package isolation's, whose helpers they call.
type TB = isolation.TB

// Hooks for tests of Main: exit ends the process, stderr takes Main's
// messages, notify delivers termination signals.
var (
	exit             = os.Exit
	stderr io.Writer = os.Stderr
	notify           = func(c chan<- os.Signal) { signal.Notify(c, os.Interrupt, syscall.SIGTERM) }
)

// Main is the entry point for TestMain: it loads the configuration
// (cleanroom.toml and CLEANROOM_* variables, see LoadConfig), declares the
// services, runs the tests (see Environment.Run) and exits with their
// status. A configuration or engine problem exits 1 before any test runs,
// with an error that says what to fix.
//
//	func TestMain(m *testing.M) {
//		cleanroom.Main(m, cleanroom.Postgres(), cleanroom.Redis())
//	}
func Main(m TestingM, services ...Service) {
	cfg, err := LoadConfig("")
	if err != nil {
		fmt.Fprintln(stderr, prefixed(err))
		exit(1)
		return
	}
	env, err := New(context.Background(), cfg, services...)
	if err != nil {
		fmt.Fprintln(stderr, prefixed(err))
		exit(1)
		return
	}
	exit(env.Run(m))
}

// prefixed is err's text starting with "cleanroom: " once.
func prefixed(err error) string {
	if msg := err.Error(); strings.HasPrefix(msg, "cleanroom: ") {
		return msg
	}
	return "cleanroom: " + err.Error()
}

// current is the environment whose Run is running the tests: the one
// PostgresFor, RedisFor and ContainerFor use.
var (
	currentMu sync.Mutex
	current   *Environment
)

func setCurrent(env *Environment) {
	currentMu.Lock()
	current = env
	currentMu.Unlock()
}

// Run runs the tests (m.Run) with this environment as the one the
// per-test helpers (PostgresFor, NewDatabase, …) use, then closes it
// (removing what this process created; the suite's reaper removes the
// shared pod after the grace period) and returns the tests' exit code, 1
// when they passed but the clean-up failed. On SIGINT or SIGTERM it cleans
// up the same way and exits the process (130 or 143) without returning; a
// second signal exits at once. For a custom TestMain:
//
//	env, err := cleanroom.New(ctx, cfg, cleanroom.Postgres())
//	if err != nil { … }
//	os.Exit(env.Run(m))
func (e *Environment) Run(m TestingM) int {
	began := time.Now()
	setCurrent(e)
	defer setCurrent(nil)

	sigs := make(chan os.Signal, 1)
	notify(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case sig := <-sigs:
			code := 130
			if sig == syscall.SIGTERM {
				code = 143
			}
			fmt.Fprintf(stderr, "cleanroom: %v: removing the suite's containers (again to stop at once)\n", sig)
			cleaned := make(chan struct{})
			go func() {
				isolate.CloseAll()
				closeEnv(e)
				close(cleaned)
			}()
			select {
			case <-cleaned:
			case sig := <-sigs:
				// A second signal: whoever sent it will not wait. The
				// lease goes with the process; the reaper removes the
				// shared pod after the grace period, conmon's run-time
				// limit the rest.
				fmt.Fprintf(stderr, "cleanroom: %v again: exiting without waiting for the clean-up; the suite's reaper removes its pod\n", sig)
			}
			exit(code)
		case <-done:
		}
	}()

	code := m.Run()
	// The isolation helpers' servers: unused spare clones and pending drops
	// go before the environment lets the pod go.
	isolate.CloseAll()
	if err := closeEnv(e); err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		if code == 0 {
			code = 1
		}
	}
	if summaryEnabled() {
		fmt.Fprintln(stderr, summary(e, time.Since(began)))
	}
	return code
}

func closeEnv(env *Environment) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return env.Close(ctx)
}

func summaryEnabled() bool {
	v := os.Getenv("CLEANROOM_SUMMARY")
	return debugEnabled() || (v != "" && v != "0" && v != "false")
}

// summary is the one line CLEANROOM_SUMMARY=1 prints per test binary.
func summary(env *Environment, total time.Duration) string {
	st := env.Stats()
	var ready []string
	env.readyMu.Lock()
	for _, name := range slices.Sorted(maps.Keys(env.ready)) {
		ready = append(ready, fmt.Sprintf("%s in %s", name, env.ready[name].Round(time.Millisecond)))
	}
	env.readyMu.Unlock()
	r := "no service used"
	if len(ready) > 0 {
		r = strings.Join(ready, ", ")
	}
	return fmt.Sprintf("cleanroom: %s: ready %s; containers started %d, adopted %d, reused %d, replaced %d, per-test %d; total %s",
		packageName(), r, st.Started, st.Adopted, st.Reused, st.Replaced, st.PerTest, total.Round(time.Millisecond))
}

func packageName() string {
	wd, err := os.Getwd()
	if err != nil {
		return "?"
	}
	return wd[strings.LastIndex(wd, "/")+1:]
}
