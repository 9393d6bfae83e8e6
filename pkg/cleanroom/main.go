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

	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

// TestingM is what Main needs of *testing.M.
type TestingM interface {
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
// services, runs the tests, removes every container it started, and exits
// with the tests' status. SIGINT and SIGTERM take the same clean-up path.
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
	exit(Run(m, cfg, services...))
}

// prefixed is err's text starting with "cleanroom: " once.
func prefixed(err error) string {
	if msg := err.Error(); strings.HasPrefix(msg, "cleanroom: ") {
		return msg
	}
	return "cleanroom: " + err.Error()
}

var (
	defaultMu  sync.Mutex
	defaultEnv *Environment
)

// Run is Main with an explicit configuration, returning the exit status
// instead of exiting. Tests of the package reach the environment through
// PostgresFor, RedisFor and ContainerFor.
func Run(m TestingM, cfg Config, services ...Service) int {
	began := time.Now()
	ctx := context.Background()
	env, err := New(ctx, cfg, services...)
	if err != nil {
		fmt.Fprintln(stderr, prefixed(err))
		return 1
	}
	setDefault(env)
	defer setDefault(nil)

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
				isolation.CloseAll()
				closeEnv(env)
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
	// The isolation helpers' servers: unused pool clones and pending drops
	// go before the environment lets the pod go.
	isolation.CloseAll()
	if err := closeEnv(env); err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		if code == 0 {
			code = 1
		}
	}
	if summaryEnabled() {
		fmt.Fprintln(stderr, summary(env, time.Since(began)))
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

func setDefault(env *Environment) {
	defaultMu.Lock()
	defaultEnv = env
	defaultMu.Unlock()
}

// Default returns the environment of the running Main or Run, or nil.
func Default() *Environment {
	defaultMu.Lock()
	defer defaultMu.Unlock()
	return defaultEnv
}

func defaultFor(t TB) *Environment {
	t.Helper()
	env := Default()
	if env == nil {
		t.Fatalf("cleanroom: no environment: call cleanroom.Main(m, …) from TestMain (or use Environment.Use with your own)")
	}
	return env
}

// PostgresFor returns the suite's PostgreSQL server for test t, starting it
// on first use. Safe for parallel tests: they share the server (isolate
// their data per test). The container is not replaced while t runs.
func PostgresFor(t TB) *PostgresServer {
	t.Helper()
	return defaultFor(t).Postgres(t)
}

// RedisFor returns the suite's Redis server for test t, as PostgresFor.
func RedisFor(t TB) *RedisServer {
	t.Helper()
	return defaultFor(t).Redis(t)
}

// ContainerFor returns the container of the suite's service name for t.
func ContainerFor(t TB, name string) *Container {
	t.Helper()
	return defaultFor(t).Use(t, name)
}

// Postgres is PostgresFor on this environment (service "postgres").
func (e *Environment) Postgres(t TB) *PostgresServer {
	t.Helper()
	return e.Use(t, "postgres").Postgres()
}

// Redis is RedisFor on this environment (service "redis").
func (e *Environment) Redis(t TB) *RedisServer {
	t.Helper()
	return e.Use(t, "redis").Redis()
}

// Use returns service name's container for test t: the suite's singleton,
// attached until t ends (it is not replaced meanwhile). With singletons
// disabled, t gets a container in a pod of its own, removed when t ends.
// When the singleton cannot be created, so does t, and the tests after it
// until the singleton is tried again (after 10 s, then twice as long each
// time, up to 2 min); the first fallback and the singleton's return are
// printed on stderr. Failures end t with Fatalf.
func (e *Environment) Use(t TB, name string) *Container {
	t.Helper()
	ctx := context.Background()
	ent, err := e.lookup(ctx, name, nil)
	if err != nil {
		t.Fatalf("%v", err)
		return nil
	}
	ent.mu.Lock()
	fallback, broken := ent.fallback, ent.broken
	retry := !e.cfg.DisableSingletonContainers && (fallback == nil || (!ent.retrying && !time.Now().Before(ent.retryAt)))
	if fallback != nil && retry {
		ent.retrying = true // one test tries the singleton again; the others go on alone
	}
	ent.mu.Unlock()
	if broken != nil {
		t.Fatalf("cleanroom: %s is not available (it failed earlier in this run): %v", name, broken)
		return nil
	}
	if retry {
		began := time.Now()
		c, err := e.acquire(ctx, ent, true)
		ent.mu.Lock()
		ent.retrying = false
		if err == nil {
			if ent.fallback != nil {
				ent.fallback, ent.backoff = nil, 0
				notice("%s: the shared container is up again; tests share it from now on", name)
			}
			ent.mu.Unlock()
			e.noteReady(name, time.Since(began))
			t.Cleanup(func() { e.release(ent, c) })
			return c
		}
		if e.isClosed() {
			ent.mu.Unlock()
			t.Fatalf("%v", err)
			return nil
		}
		if ent.fallback == nil {
			ent.backoff = fallbackBackoff
			e.log.Warn("cleanroom: singleton could not be created; falling back to per-test containers", "service", name, "error", err)
			notice("%s: the shared container could not be started, so tests get containers of their own (slower) until it can; trying it again in %s: %v", name, ent.backoff, err)
		} else {
			ent.backoff = min(2*ent.backoff, maxFallbackBackoff)
		}
		ent.fallback, ent.retryAt = err, time.Now().Add(ent.backoff)
		fallback = err
		ent.mu.Unlock()
		t.Logf("cleanroom: %s: the shared container could not be created, so this test gets its own: %v", name, err)
	}
	c, remove, err := e.perTestContainer(ctx, ent.svc)
	if err != nil {
		if fallback != nil {
			if fallback.Error() == err.Error() {
				err = fmt.Errorf("%w\n(the per-test fallback failed the same way)", err)
			} else {
				err = fmt.Errorf("shared container: %v\nper-test fallback: %w", fallback, err)
			}
			ent.mu.Lock()
			ent.broken = err
			ent.mu.Unlock()
		}
		t.Fatalf("cleanroom: %v", err)
		return nil
	}
	t.Cleanup(func() {
		if err := remove(); err != nil {
			t.Errorf("cleanroom: remove the per-test pod of %s: %v", name, err)
		}
	})
	return c
}

// How long tests run on per-test containers before the singleton is tried
// again: fallbackBackoff after the first failure, twice as long after each
// further one, at most maxFallbackBackoff.
var (
	fallbackBackoff    = 10 * time.Second
	maxFallbackBackoff = 2 * time.Minute
)
