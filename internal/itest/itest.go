// Package itest is what the service packages' integration tests
// (integration/mariadb, nats, rabbitmq) share: an environment of the
// test's own that must leave nothing behind, a Podman client, stand-ins
// for a test that runs one benchmark iteration or that has failed, and a
// second test process of the suite. For tests only.
package itest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// EnvOr is the environment variable key, or def when it is empty.
func EnvOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// RandomHex is n random bytes in hex.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Podman connects to the engine the library would use, closed when t
// ends.
func Podman(t testing.TB) *podman.Client {
	t.Helper()
	c, err := podman.Connect(context.Background(), podman.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// NewEnv is an environment of the test's own with services: a suite named
// prefix plus random hex, so its own pod; ports at CLEANROOM_BIND_ADDRESS
// (default 127.0.0.1); a grace period of a millisecond unless cfg says
// otherwise. It is closed when t ends, and then no pod or container of its
// suite may remain.
func NewEnv(t *testing.T, prefix string, cfg cleanroom.Config, services ...cleanroom.Service) *cleanroom.Environment {
	t.Helper()
	cfg.Suite = prefix + RandomHex(4)
	cfg.BindAddress = EnvOr("CLEANROOM_BIND_ADDRESS", "127.0.0.1")
	if cfg.GracePeriod == 0 {
		cfg.GracePeriod = time.Millisecond
	}
	env, err := cleanroom.New(context.Background(), cfg, services...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		AssertNothingLeft(t, env.Suite())
	})
	return env
}

// AssertNothingLeft checks that no pod or container of suite remains
// once its reaper had time to act (20 s).
func AssertNothingLeft(t testing.TB, suite string) {
	t.Helper()
	c := Podman(t)
	lbl := map[string]string{labels.Suite: suite}
	var pods []podman.PodSummary
	var cts []podman.ContainerSummary
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var err, err2 error
		pods, err = c.ListPods(context.Background(), lbl)
		cts, err2 = c.ListContainers(context.Background(), lbl)
		if err == nil && err2 == nil && len(pods) == 0 && len(cts) == 0 {
			return
		}
	}
	t.Errorf("suite %s left %d pods and %d containers", suite, len(pods), len(cts))
}

// Iteration is one benchmark iteration as a passing test: End runs its
// clean-ups, last registered first.
type Iteration struct {
	testing.TB
	cleanups []func()
}

func (i *Iteration) Cleanup(fn func()) { i.cleanups = append(i.cleanups, fn) }
func (i *Iteration) Failed() bool      { return false }

// End runs the iteration's clean-ups and forgets them.
func (i *Iteration) End() {
	for n := len(i.cleanups) - 1; n >= 0; n-- {
		i.cleanups[n]()
	}
	i.cleanups = i.cleanups[:0]
}

// FailedTest is a test that has failed, for what a failed test keeps:
// its log lines go to Logs, and End runs its clean-ups.
type FailedTest struct {
	testing.TB
	Logs     []string
	cleanups []func()
}

func (f *FailedTest) Failed() bool      { return true }
func (f *FailedTest) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *FailedTest) Logf(format string, a ...any) {
	f.Logs = append(f.Logs, fmt.Sprintf(format, a...))
}

// End runs the test's clean-ups, last registered first.
func (f *FailedTest) End() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// Process is a second test process of the suite: the test binary again,
// running one test.
type Process struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	waited bool
}

// StartProcess runs the test binary again with envVar=1, running only
// the test named test, and waits (up to two minutes) for that test to
// print a line "READY field…" on stdout; it returns the fields. The test
// runs until its stdin closes or Kill; it is killed when t ends at the
// latest.
func StartProcess(t *testing.T, envVar, test string) (*Process, []string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), envVar+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Process{cmd: cmd, stdin: stdin}
	t.Cleanup(p.Kill)
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "READY ") {
				lines <- sc.Text()
				break
			}
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line, ok := <-lines:
		if !ok {
			t.Fatalf("the second test process (%s) ended without saying READY", test)
		}
		return p, strings.Fields(line)[1:]
	case <-time.After(2 * time.Minute):
		t.Fatalf("the second test process (%s) did not say READY within 2 minutes", test)
	}
	return nil, nil
}

// Kill ends the process with SIGKILL (no clean-up of its runs) and waits
// for it.
func (p *Process) Kill() {
	if p.waited {
		return
	}
	p.waited = true
	// SIGKILL before stdin closes: on EOF the test would end by itself,
	// running its clean-ups.
	_ = p.cmd.Process.Kill()
	p.stdin.Close()
	_ = p.cmd.Wait()
}
