package cleanroom

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fakeM runs body as its tests and returns code.
type fakeM struct {
	body func()
	code int
}

func (m *fakeM) Run() int {
	if m.body != nil {
		m.body()
	}
	return m.code
}

// stubMain replaces Main's process hooks and the engine for one test.
func stubMain(t *testing.T, f *fakeEngine) (exitCode func() int, out *syncBuffer, signals chan os.Signal) {
	t.Helper()
	var code atomic.Int64
	code.Store(-1)
	buf := &syncBuffer{}
	sigs := make(chan os.Signal, 1)
	oldExit, oldStderr, oldNotify, oldDial := exit, stderr, notify, dialEngine
	exit = func(c int) { code.Store(int64(c)) }
	stderr = buf
	notify = func(c chan<- os.Signal) {
		go func() {
			for s := range sigs {
				c <- s
			}
		}()
	}
	dialEngine = func(context.Context, string) (engine, error) {
		if f == nil {
			return nil, errors.New("no Podman API service answers at unix:///run/podman/podman.sock (rootful socket)")
		}
		return f, nil
	}
	t.Cleanup(func() { exit, stderr, notify, dialEngine = oldExit, oldStderr, oldNotify, oldDial; close(sigs) })
	return func() int { return int(code.Load()) }, buf, sigs
}

// syncBuffer is a bytes.Buffer safe for the signal goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunReturnsTheTestsCodeAndCleansUp(t *testing.T) {
	f := newFakeEngine()
	stubMain(t, f)
	var used *Container
	m := &fakeM{code: 3, body: func() {
		tb := &fakeTB{name: "TestX"}
		tb.run(func(tb TB) { used = ContainerFor(tb, "web") })
		tb.finish()
	}}
	code := runWith(m, Config{}, Generic("web", "example.com/web:1"))
	if code != 3 {
		t.Errorf("Run returned %d, want the tests' 3", code)
	}
	if used == nil {
		t.Fatal("ContainerFor gave nothing during the run")
	}
	if _, pods, live := f.counts(); pods != 0 || live != 0 {
		t.Errorf("after Run: %d pods, %d containers", pods, live)
	}
	currentMu.Lock()
	left := current
	currentMu.Unlock()
	if left != nil {
		t.Error("the current environment outlives Run")
	}
}

func TestRunFailsWhenCleanupFails(t *testing.T) {
	f := newFakeEngine()
	_, out, _ := stubMain(t, f)
	f.removePodErr = func(string) error { return errors.New("device or resource busy") }
	m := &fakeM{code: 0, body: func() {
		tb := &fakeTB{name: "TestX"}
		tb.run(func(tb TB) { ContainerFor(tb, "web") })
		tb.finish()
	}}
	if code := runWith(m, Config{}, Generic("web", "example.com/web:1")); code != 1 {
		t.Errorf("Run returned %d after a failed clean-up, want 1", code)
	}
	if !strings.Contains(out.String(), "device or resource busy") {
		t.Errorf("the clean-up failure was not reported: %q", out.String())
	}
}

func TestMainReportsBadConfigAndDeadEngine(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/go.mod", []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/"+configFile, []byte("[cleanroom]\ncontainer_startup_timeout = -1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	code, out, _ := stubMain(t, newFakeEngine())
	ran := false
	Main(&fakeM{body: func() { ran = true }}, Postgres())
	if code() != 1 || ran || !strings.Contains(out.String(), "container_startup_timeout: must be a positive number") {
		t.Errorf("bad config: exit %d, tests ran %v, output %q", code(), ran, out.String())
	}

	if err := os.Remove(dir + "/" + configFile); err != nil {
		t.Fatal(err)
	}
	code, out, _ = stubMain(t, nil)
	Main(&fakeM{body: func() { ran = true }}, Postgres())
	if code() != 1 || ran || !strings.Contains(out.String(), "no Podman API service answers") {
		t.Errorf("dead engine: exit %d, tests ran %v, output %q", code(), ran, out.String())
	}
}

func TestSignalTakesTheCleanupPath(t *testing.T) {
	f := newFakeEngine()
	code, out, sigs := stubMain(t, f)
	m := &fakeM{body: func() {
		tb := &fakeTB{name: "TestX"}
		tb.run(func(tb TB) { ContainerFor(tb, "web") })
		if _, pods, _ := f.counts(); pods != 1 {
			t.Errorf("%d pods before the signal", pods)
		}
		sigs <- syscall.SIGTERM
		// The handler removes the pods, then exits (stubbed): wait for it.
		for i := 0; i < 1000; i++ {
			if _, pods, _ := f.counts(); pods == 0 && code() != -1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}}
	runWith(m, Config{}, Generic("web", "example.com/web:1"))
	if code() != 143 {
		t.Errorf("exit code after SIGTERM %d, want 143", code())
	}
	if !strings.Contains(out.String(), "terminated: removing the suite's containers") {
		t.Errorf("output %q", out.String())
	}
}

func TestHelpersWithoutMainFailClearly(t *testing.T) {
	tb := &fakeTB{name: "TestX"}
	if tb.run(func(tb TB) { PostgresFor(tb) }) {
		t.Fatal("PostgresFor without Main did not fail")
	}
	if !strings.Contains(tb.fatal, "call cleanroom.Main(m, …) from TestMain") {
		t.Errorf("failure: %q", tb.fatal)
	}
}

// runWith is what a custom TestMain does: New, then Run.
func runWith(m TestingM, cfg Config, services ...Service) int {
	env, err := New(context.Background(), cfg, services...)
	if err != nil {
		fmt.Fprintln(stderr, prefixed(err))
		return 1
	}
	return env.Run(m)
}
