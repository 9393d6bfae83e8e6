// Package sharing checks, against the real engine and its event stream, that
// all test processes of one run share one pod, that it goes away after the
// last one — also when one is SIGKILLed — and that keep-warm keeps it.
package sharing

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// victimEnv makes this test binary a test process that starts the suite's
// services, says READY and then waits to be killed.
const victimEnv = "CLEANROOM_TEST_VICTIM"

func TestMain(m *testing.M) {
	if os.Getenv(victimEnv) != "" {
		os.Exit(victim())
	}
	os.Exit(m.Run())
}

func victim() int {
	cfg, err := cleanroom.LoadConfig("")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	env, err := cleanroom.New(context.Background(), cfg, cleanroom.Postgres(), cleanroom.Redis())
	if err != nil {
		fmt.Println(err)
		return 1
	}
	return env.Run(victimM{env})
}

type victimM struct{ env *cleanroom.Environment }

func (v victimM) Run() int {
	env := v.env
	for _, svc := range []string{"postgres", "redis"} {
		if _, err := env.Get(context.Background(), svc); err != nil {
			fmt.Println(err)
			return 1
		}
	}
	fmt.Println("READY")
	time.Sleep(10 * time.Minute) // "in the middle of its tests"
	return 0
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func connect(t *testing.T) *podman.Client { return connectB(t) }

func connectB(t testing.TB) *podman.Client {
	t.Helper()
	c, err := podman.Connect(context.Background(), podman.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// suiteEnv is the environment of a subprocess run in suite: its own, so
// that nothing else of `make test` shares it.
func suiteEnv(suite string, extra ...string) []string {
	return append(append(os.Environ(), "CLEANROOM_SUITE="+suite), extra...)
}

func newSuite(prefix string) string { return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1e9) }

// creations counts, from the engine's event stream since since, the pods
// and service containers of suite that were created (pod name and service
// name as keys).
func creations(t *testing.T, c *podman.Client, suite string, since time.Time) map[string]int {
	t.Helper()
	evs, err := c.Events(context.Background(), since, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range evs {
		if e.Action != "create" {
			continue
		}
		// A snapshot builder (first cold start of a definition) saves the
		// start-up state for later runs, in a pod of its own: not a service.
		switch {
		case e.Type == "pod" && strings.HasPrefix(e.Name(), "cleanroom-"+suite) && !strings.Contains(e.Name(), "-snap-"):
			out["pod "+e.Name()]++
		case e.Type == "container" && e.Actor.Attributes[labels.Suite] == suite && e.Actor.Attributes[labels.Service] != "" &&
			e.Actor.Attributes[labels.Role] != "snapshot-builder":
			out["container "+e.Actor.Attributes[labels.Service]]++
		}
	}
	return out
}

// waitGone waits until nothing labelled with suite is left, failing after
// limit.
func waitGone(t *testing.T, c *podman.Client, suite string, limit time.Duration) {
	t.Helper()
	labels := map[string]string{labels.Suite: suite}
	var pods []podman.PodSummary
	var cts []podman.ContainerSummary
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var err error
		if pods, err = c.ListPods(context.Background(), labels); err != nil {
			t.Fatal(err)
		}
		if cts, err = c.ListContainers(context.Background(), labels); err != nil {
			t.Fatal(err)
		}
		if len(pods) == 0 && len(cts) == 0 {
			return
		}
	}
	var names []string
	for _, p := range pods {
		names = append(names, "pod "+p.Name)
	}
	for _, ct := range cts {
		names = append(names, "container "+strings.Join(ct.Names, ","))
	}
	t.Errorf("suite %s: %d pods and %d containers still there after %s: %s", suite, len(pods), len(cts), limit, strings.Join(names, ", "))
	for _, p := range pods {
		_ = c.RemovePod(context.Background(), p.ID)
	}
}

// goTest runs `go test` on the example shop's packages.
func goTest(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"test", "-count=1"}, append(args, "./examples/shop/...")...)...)
	cmd.Dir = repoRoot(t)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestOneRunSharesOnePod(t *testing.T) {
	c := connect(t)
	// Build the packages first, so that -p 1 starts each one quickly.
	goTest(t, os.Environ(), "-run", "^$")
	for _, p := range []string{"4", "1"} {
		t.Run("p"+p, func(t *testing.T) {
			suite := newSuite("share-p" + p)
			since := time.Now()
			out := goTest(t, suiteEnv(suite, "CLEANROOM_SUMMARY=1"), "-v", "-p", p)
			got := creations(t, c, suite, since)
			want := map[string]int{"pod cleanroom-" + suite: 1, "container postgres": 1, "container redis": 1}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("created in the run of 3 packages with -p %s: %v; want %v\n%s", p, got, want, summaries(out))
			}
			waitGone(t, c, suite, 10*time.Second+15*time.Second)
		})
	}
}

func summaries(out string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "cleanroom:") {
			b.WriteString(sc.Text() + "\n")
		}
	}
	return b.String()
}

// startVictim starts this test binary as a victim (see victim) and
// returns once it said READY; it does not outlive the test.
func startVictim(t *testing.T, exe string, env []string, i int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(exe)
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		var lines []string
		for sc.Scan() {
			if sc.Text() == "READY" {
				ready <- ""
			}
			lines = append(lines, sc.Text())
		}
		ready <- strings.Join(lines, "\n")
	}()
	select {
	case msg := <-ready:
		if msg != "" {
			t.Fatalf("run %d: the victim ended before it was ready:\n%s", i, msg)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("run %d: the victim never got ready", i)
	}
	return cmd
}

// A pod a dead process's request made after the reaper swept at its death
// (a snapshot builder's pod, its creation in flight at the SIGKILL) goes
// with the suite: the reaper sweeps once more before it ends.
func TestPodOfADeadProcessMadeAfterItsDeathGoesWithTheSuite(t *testing.T) {
	c := connect(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	suite := newSuite("latepod")
	cmd := startVictim(t, exe, suiteEnv(suite, victimEnv+"=1", "CLEANROOM_GRACE_PERIOD=4", "CLEANROOM_SNAPSHOTS=false"), 0)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// The reaper sees the death within a tenth of a second; the pod comes
	// a second later, well inside the 4 s grace.
	time.Sleep(time.Second)
	late := "cleanroom-" + suite + "-gone0001-snap-postgres"
	args := []string{"pod", "create", "--name", late,
		"--label", podman.LabelManaged + "=true", "--label", labels.Suite + "=" + suite,
		"--label", labels.Run + "=gone0001", "--label", labels.Role + "=snapshot"}
	if out, err := exec.Command("podman", args...).CombinedOutput(); err != nil {
		t.Fatalf("podman %v: %v\n%s", args, err, out)
	}
	waitGone(t, c, suite, 15*time.Second)
}

func TestSIGKILLedTestProcessLeavesNothing(t *testing.T) {
	c := connect(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	suite := newSuite("sigkill")
	env := suiteEnv(suite, victimEnv+"=1", "CLEANROOM_GRACE_PERIOD=1")

	// Decoys without cleanroom labels, named as the suite's pods are: no
	// sweep and no reaper may touch them.
	decoyPod, decoyCtr := "cleanroom-"+suite+"-decoy0001-t1", "cleanroom-"+suite+"-decoy"
	for _, args := range [][]string{
		{"pod", "create", "--name", decoyPod},
		{"create", "--name", decoyCtr, "localhost/cleanroom/busybox:latest", "true"},
	} {
		if out, err := exec.Command("podman", args...).CombinedOutput(); err != nil {
			t.Fatalf("podman %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() {
		_ = exec.Command("podman", "pod", "rm", "-f", decoyPod).Run()
		_ = exec.Command("podman", "rm", "-f", decoyCtr).Run()
	})
	for i := range 10 {
		cmd := startVictim(t, exe, env, i)
		if pods, _ := c.ListPods(context.Background(), map[string]string{labels.Suite: suite, labels.Role: "suite"}); len(pods) != 1 {
			t.Fatalf("run %d: %d pods while the victim runs, want 1", i, len(pods))
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		waitGone(t, c, suite, 15*time.Second)
	}

	// A following run is green (goTest fails the test otherwise) and
	// leaves nothing either.
	goTest(t, suiteEnv(suite, "CLEANROOM_GRACE_PERIOD=1"))
	waitGone(t, c, suite, 15*time.Second)
	if _, err := c.InspectPod(context.Background(), decoyPod); err != nil {
		t.Errorf("the unlabelled decoy pod did not survive the sweeps: %v", err)
	}
	if _, err := c.InspectContainer(context.Background(), decoyCtr); err != nil {
		t.Errorf("the unlabelled decoy container did not survive the sweeps: %v", err)
	}
}

func TestKeepWarmSecondRunCreatesNothing(t *testing.T) {
	c := connect(t)
	suite := newSuite("warm")
	env := suiteEnv(suite, "CLEANROOM_KEEP_WARM=120", "CLEANROOM_GRACE_PERIOD=1", "CLEANROOM_SUMMARY=1")
	t.Cleanup(func() {
		// Keep-warm would leave it for two minutes: not after a test.
		_ = c.RemovePod(context.Background(), "cleanroom-"+suite)
		waitGone(t, c, suite, 10*time.Second)
	})
	goTest(t, env)
	time.Sleep(2 * time.Second) // past the grace period: only keep-warm holds the pod now
	if pods, _ := c.ListPods(context.Background(), map[string]string{labels.Suite: suite, labels.Role: "suite"}); len(pods) != 1 {
		t.Fatalf("%d pods kept warm, want 1", len(pods))
	}
	since := time.Now()
	out := goTest(t, env, "-v")
	if got := creations(t, c, suite, since); len(got) != 0 {
		t.Errorf("the second run created %v; want nothing\n%s", got, summaries(out))
	}
	sum := summaries(out)
	if n := strings.Count(sum, "cleanroom:"); n != 3 || strings.Count(sum, "started 0, adopted") != n {
		t.Errorf("every package of the second run must adopt, none start:\n%s", sum)
	}
}
