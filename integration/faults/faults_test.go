package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/internal/lease"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// grace is the scenarios' grace period: short, so that a suite is gone
// soon after its last process.
// Snapshots are off: each scenario's suite is new, so a snapshot would only
// cost its builder.
var grace = []string{"CLEANROOM_GRACE_PERIOD=1", "CLEANROOM_SNAPSHOTS=false"}

// results reads the RESULT line of a work helper.
func results(t *testing.T, p *proc) []testRun {
	t.Helper()
	line := p.waitFor(t, "RESULT ", 3*time.Minute)
	var runs []testRun
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "RESULT ")), &runs); err != nil {
		t.Fatal(err)
	}
	p.finish(t)
	return runs
}

// The Podman API service restarted in the middle of a parallel suite: the
// service containers keep running (conmon holds them), and the tests that
// use them go on.
func TestEngineRestartMidSuite(t *testing.T) {
	// Not parallel: a restart would disturb every other scenario.
	suite := newSuite(t, "restart")
	decoys(t, suite)
	var procs []*proc
	for range 3 {
		procs = append(procs, start(t, "work", suite, append(grace, "CLEANROOM_FAULTS_FOR=10s", "CLEANROOM_FAULTS_WORKERS=4")...))
	}
	time.Sleep(4 * time.Second)
	restartEngine(t)
	total := 0
	for i, p := range procs {
		for _, r := range results(t, p) {
			total++
			if r.Err != "" {
				t.Errorf("process %d: a test begun at %s failed: %s", i, r.Began.Format("15:04:05.000"), r.Err)
			}
		}
	}
	if total < 30 {
		t.Errorf("only %d tests ran", total)
	}
	waitGone(t, suite, 20*time.Second)
}

// restartEngine stops the Podman API service behind the default address
// and starts it again with the same command line and environment, in a
// session of its own, as the set-up scripts do. It skips where the service
// is not a process of this machine that this test can restart (systemd's,
// or an engine in a container).
func restartEngine(t *testing.T) {
	t.Helper()
	uri := connect(t).Endpoint().URI
	pid, argv, environ := serviceProcess(uri)
	if pid == 0 {
		t.Skipf("the Podman API service at %s is no process of this machine this test can restart", uri)
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; syscall.Kill(pid, 0) == nil; i++ {
		if i == 100 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, err := os.OpenFile(filepath.Join(os.TempDir(), fmt.Sprintf("cleanroom-faults-service-%d.log", os.Getuid())), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = environ
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the Podman API service again: %v", err)
	}
	newPID := cmd.Process.Pid
	_ = cmd.Process.Release()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		c, err := podman.Connect(context.Background(), podman.Options{URI: uri})
		if err == nil {
			c.Close()
			t.Logf("restarted the Podman API service at %s (pid %d, was %d)", uri, newPID, pid)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted Podman API service does not answer: %v", err)
		}
	}
}

// serviceProcess finds the `podman system service` process listening at
// uri: its PID, command line and environment.
func serviceProcess(uri string) (int, []string, []string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(argv) < 3 || filepath.Base(argv[0]) != "podman" || !strings.Contains(string(raw), "system\x00service") || argv[len(argv)-1] != uri {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		return pid, argv, strings.Split(strings.TrimRight(string(env), "\x00"), "\x00")
	}
	return 0, nil, nil
}

// The Postgres container killed (podman kill) and removed in the middle of
// a suite: it is replaced, and the tests that begin once the health check
// has seen it pass.
func TestPostgresKilledMidSuite(t *testing.T) {
	t.Parallel()
	suite := newSuite(t, "kill")
	decoys(t, suite)
	var procs []*proc
	for range 2 {
		procs = append(procs, start(t, "work", suite, append(grace, "CLEANROOM_FAULTS_FOR=30s", "CLEANROOM_FAULTS_WORKERS=4", "CLEANROOM_CONTAINER_HEALTH_CHECK_INTERVAL=1")...))
	}
	// Mid-suite: once the workers' Postgres runs (a cold start with initdb
	// and a snapshot build can take a while on a loaded machine), and they
	// have used it for a moment.
	c := connect(t)
	var cts []podman.ContainerSummary
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		var err error
		cts, err = c.ListContainers(context.Background(), map[string]string{labels.Suite: suite, labels.Service: "postgres", labels.Role: "service"})
		if err == nil && len(cts) == 1 && cts[0].State == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the suite's Postgres container after 2 min: %v, %v", cts, err)
		}
	}
	time.Sleep(2 * time.Second)
	killed := time.Now()
	for _, args := range [][]string{{"kill", cts[0].ID}, {"rm", "-f", cts[0].ID}} {
		if out, err := exec.Command("podman", args...).CombinedOutput(); err != nil {
			t.Fatalf("podman %v: %v\n%s", args, err, out)
		}
	}
	// Tests that began before the replacement was up may have met the dead
	// container. The replacement is up when the first test begun after the
	// kill passes; every test begun after that one ended must pass too.
	var runs []testRun
	for _, p := range procs {
		runs = append(runs, results(t, p)...)
	}
	var settled time.Time
	for _, r := range runs {
		if r.Began.After(killed) && r.Err == "" && (settled.IsZero() || r.Ended.Before(settled)) {
			settled = r.Ended
		}
	}
	if settled.IsZero() {
		t.Fatalf("no test begun after the kill passed (%d tests in all): the Postgres container was not replaced", len(runs))
	}
	failedBefore, after := 0, 0
	for _, r := range runs {
		switch {
		case !r.Began.After(settled):
			if r.Err != "" {
				failedBefore++
			}
		default:
			after++
			if r.Err != "" {
				t.Errorf("a test begun %s after the kill (the replacement was up %s after it) failed: %s",
					r.Began.Sub(killed).Round(time.Millisecond), settled.Sub(killed).Round(time.Millisecond), r.Err)
			}
		}
	}
	t.Logf("the replacement was up %s after the kill; %d tests failed before that, %d began after it",
		settled.Sub(killed).Round(time.Millisecond), failedBefore, after)
	if after == 0 {
		t.Errorf("no test began after the replacement was up (%s after the kill): nothing shows that it works", settled.Sub(killed).Round(time.Millisecond))
	}
	if n := creations(t, c, suite, killed)["container postgres"]; n != 1 {
		t.Errorf("%d Postgres containers created after the kill, want 1 (the replacement)", n)
	}
	waitGone(t, suite, 20*time.Second)
}

// The suite pod removed from outside between two packages: the next
// package makes a new one and passes; the old reaper, with nothing left to
// watch, ends.
func TestSuitePodRemovedBetweenPackages(t *testing.T) {
	t.Parallel()
	suite := newSuite(t, "podrm")
	decoys(t, suite)
	first := start(t, "hold", suite, "CLEANROOM_GRACE_PERIOD=30", "CLEANROOM_SNAPSHOTS=false")
	pod := strings.Fields(first.waitFor(t, "READY", 2*time.Minute))[1]
	first.finish(t)
	if out, err := exec.Command("podman", "pod", "rm", "-f", pod).CombinedOutput(); err != nil {
		t.Fatalf("podman pod rm: %v\n%s", err, out)
	}
	second := start(t, "hold", suite, grace...)
	second.waitFor(t, "READY", 2*time.Minute)
	second.finish(t)
	waitGone(t, suite, 20*time.Second)
}

// 8 processes × 32 goroutines attaching at once, 10 times over: one pod and
// one container per service each time, and no error.
func TestManyProcessesAttachAtOnce(t *testing.T) {
	t.Parallel()
	c := connect(t)
	// One suite: from the second round on, Postgres starts from the
	// snapshot the first one saved.
	suite := newSuite(t, "crowd")
	decoys(t, suite)
	t.Cleanup(func() { removeSnapshots(t, suite) })
	for round := range 10 {
		since := time.Now()
		var procs []*proc
		for range 8 {
			procs = append(procs, start(t, "attach", suite, "CLEANROOM_GRACE_PERIOD=1", "CLEANROOM_SNAPSHOTS=true"))
		}
		for i, p := range procs {
			p.waitFor(t, "OK", 3*time.Minute)
			p.finish(t)
			if t.Failed() {
				t.Fatalf("round %d, process %d failed", round, i)
			}
		}
		attached := time.Since(since)
		want := map[string]int{"pod": 1, "container postgres": 1, "container redis": 1}
		if got := creations(t, c, suite, since); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("round %d: created %v, want %v", round, got, want)
		}
		waitGone(t, suite, 20*time.Second)
		t.Logf("round %d: 8 processes attached in %s, the suite was gone %s later", round, attached.Round(time.Millisecond), (time.Since(since) - attached).Round(time.Millisecond))
	}
}

// A test binary SIGKILLed at random points of its start-up, 20 times in a
// row; then a normal run passes, and nothing is left.
func TestSIGKILLDuringStartUp(t *testing.T) {
	t.Parallel()
	suite := newSuite(t, "killstart")
	decoys(t, suite)
	for range 20 {
		p := start(t, "hold", suite, grace...)
		time.Sleep(time.Duration(rand.IntN(1500)) * time.Millisecond)
		p.kill()
	}
	began := time.Now()
	p := start(t, "hold", suite, grace...)
	p.waitFor(t, "READY", 2*time.Minute)
	p.finish(t)
	t.Logf("the run after 20 SIGKILLs was ready in %s", time.Since(began).Round(time.Millisecond))
	waitGone(t, suite, 30*time.Second)
}

// The reaper SIGKILLed: the suite's pod outlives its processes, and the
// next run sweeps it before it makes its own.
func TestReaperKilledNextRunSweeps(t *testing.T) {
	t.Parallel()
	suite := newSuite(t, "reaper")
	decoys(t, suite)
	p := start(t, "hold", suite, grace...)
	pod := strings.Fields(p.waitFor(t, "READY", 2*time.Minute))[1]
	uri := connect(t).Endpoint().URI
	st := lease.Leases(uri, pod)
	if st.ReaperPID == 0 {
		t.Fatalf("no reaper watches %s: %+v", pod, st)
	}
	if err := syscall.Kill(st.ReaperPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c := connect(t)
	before, err := c.InspectPod(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	p.finish(t)
	time.Sleep(3 * time.Second) // past the grace period: no reaper acts
	if _, err := c.InspectPod(context.Background(), pod); err != nil {
		t.Fatalf("with its reaper killed, the pod went anyway: %v", err)
	}
	next := start(t, "hold", suite, grace...)
	next.waitFor(t, "READY", 2*time.Minute)
	after, err := c.InspectPod(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	if after.ID == before.ID {
		t.Errorf("the next run adopted the stale pod %s instead of sweeping it", pod)
	}
	next.finish(t)
	waitGone(t, suite, 20*time.Second)
}

// keep-warm, then `cleanroom gc --all` (of the scenario's suite only: the
// machine may hold other suites, kept warm), then a plain run: the plain run's
// pod goes after its own grace period (the keep-warm run's reaper ended
// with the pod gc removed). And keep-warm, then a plain run without gc:
// the plain run's settings replace the kept-warm ones.
func TestKeepWarmThenGCThenPlainRun(t *testing.T) {
	t.Parallel()
	cli := buildCLI(t)
	for _, withGC := range []bool{true, false} {
		suite := newSuite(t, fmt.Sprintf("warmgc%v", withGC))
		decoys(t, suite)
		warm := start(t, "hold", suite, "CLEANROOM_KEEP_WARM=900", "CLEANROOM_GRACE_PERIOD=1", "CLEANROOM_SNAPSHOTS=false")
		pod := strings.Fields(warm.waitFor(t, "READY", 2*time.Minute))[1]
		warm.finish(t)
		time.Sleep(2 * time.Second)
		if _, err := connect(t).InspectPod(context.Background(), pod); err != nil {
			t.Fatalf("the kept-warm pod is gone: %v", err)
		}
		// cleanroom ps says when the kept-warm pod goes, and which reaper
		// removes it.
		out, err := exec.Command(cli, "ps").CombinedOutput()
		var row string
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, pod+" ") {
				row = line
			}
		}
		st := lease.Leases(connect(t).Endpoint().URI, pod)
		if err != nil || st.ReaperPID == 0 || !strings.Contains(row, "removed in 14m") || !strings.Contains(row, fmt.Sprintf("(reaper %d)", st.ReaperPID)) {
			t.Errorf("cleanroom ps after keep-warm (%v; reaper %d): want the pod removed in 14m…, by its reaper:\n%s", err, st.ReaperPID, out)
		}
		if withGC {
			out, err := exec.Command(cli, "gc", "--all", "--suite", suite).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "removed pod "+pod) || !strings.Contains(string(out), "ended its reaper") {
				t.Fatalf("cleanroom gc --all: %v\n%s", err, out)
			}
		}
		plain := start(t, "hold", suite, "CLEANROOM_GRACE_PERIOD=2", "CLEANROOM_SNAPSHOTS=false")
		plain.waitFor(t, "READY", 2*time.Minute)
		plain.finish(t)
		// Grace 2 s, and the reaper looks at least every second.
		waitGone(t, suite, 10*time.Second)
	}
}

func buildCLI(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cleanroom")
	if out, err := exec.Command("go", "build", "-o", path, "../../cmd/cleanroom").CombinedOutput(); err != nil {
		t.Fatalf("build the CLI: %v\n%s", err, out)
	}
	return path
}

// removeSnapshots removes the snapshot images of suite.
func removeSnapshots(t *testing.T, suite string) {
	c := connect(t)
	imgs, err := c.ListImages(context.Background(), map[string]string{labels.Suite: suite, labels.Snapshot: ""})
	if err != nil {
		t.Error(err)
		return
	}
	for _, img := range imgs {
		_ = c.RemoveImage(context.Background(), img.ID)
	}
}
