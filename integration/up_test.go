package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/labels"
)

// upSuite is a suite name of this test's own, so that concurrent tests of
// the module never meet it.
func upSuite() string {
	return fmt.Sprintf("up-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
}

// waitPodGone polls until the suite's pod is gone, for at most limit.
func waitPodGone(t *testing.T, suite string, limit time.Duration) bool {
	t.Helper()
	c := connect(t)
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		pods, err := c.ListPods(context.Background(), map[string]string{labels.Suite: suite})
		if err == nil && len(pods) == 0 {
			return true
		}
	}
	return false
}

// cleanroom up starts the suite and returns when it is ready; with no test
// coming, the suite goes when its wait is over.
func TestUpLeavesTheSuiteReadyThenGoesWhenNoTestComes(t *testing.T) {
	t.Parallel()
	suite := upSuite()
	t.Cleanup(func() { runCLI(t, nil, "gc", "--all", "--suite", suite) })
	began := time.Now()
	out, code := runCLI(t, []string{"CLEANROOM_SUITE=" + suite}, "up", "--wait", "6s")
	if code != 0 || !strings.Contains(out, "postgres ready at ") || !strings.Contains(out, "redis ready at ") {
		t.Fatalf("up (exit %d):\n%s", code, out)
	}
	ctx := context.Background()
	c := connect(t)
	for _, cmd := range [][]string{{"pg_isready", "-q"}, {"redis-cli", "-a", "x", "--no-auth-warning", "ping"}} {
		svc := "postgres"
		if cmd[0] == "redis-cli" {
			svc = "redis"
		}
		res, err := c.Exec(ctx, "cleanroom-"+suite+"-"+svc, cmd)
		// Redis answers NOAUTH to a wrong password: it is up and serving.
		if err != nil || (svc == "postgres" && res.ExitCode != 0) || (svc == "redis" && !strings.Contains(string(res.Stdout)+string(res.Stderr), "AUTH")) {
			t.Errorf("%s right after up: %+v %s %s, %v", svc, res, res.Stdout, res.Stderr, err)
		}
	}
	if time.Since(began) < 4*time.Second {
		if pods, err := c.ListPods(ctx, map[string]string{labels.Suite: suite}); err != nil || len(pods) != 1 {
			t.Errorf("%d pods of the suite before its wait was over, want 1 (%v)", len(pods), err)
		}
	}
	if !waitPodGone(t, suite, time.Minute) {
		t.Fatalf("the suite is still there a minute after a 6 s wait with no test")
	}
}

// upModule is a module of its own whose TestMain declares what up starts
// (in the other order), so that up and its tests compute the suite key
// from the same module root with no CLEANROOM_SUITE.
func upModule(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"go.mod": "module example.com/uptest\n\ngo 1.24\n\nrequire github.com/cleanroom-go/cleanroom v0.0.0\n\nreplace github.com/cleanroom-go/cleanroom => " + root + "\n",
		"go.sum": string(sum),
		"store/store_test.go": `package store

import (
	"context"
	"database/sql"
	"testing"

	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

var schema = isolation.MigrateFunc("v1", func(ctx context.Context, db *sql.DB) error {
	_, err := db.ExecContext(ctx, "CREATE TABLE t (id int)")
	return err
})

func TestMain(m *testing.M) { cleanroom.Main(m, cleanroom.Redis(), cleanroom.Postgres()) }

func TestBoth(t *testing.T) {
	db := cleanroom.NewDatabase(t, schema)
	if err := db.Pool().Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := cleanroom.RedisDB(t).Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
}
`,
	}
	for name, text := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// cleanroom up in a module, then its tests: they find the suite up started
// by the suite key alone, attach to it (no container of their own), and the
// suite goes at the end of the tests' grace period, not of up's long wait.
func TestUpThenTestsAttachAndTheirGraceEndsIt(t *testing.T) {
	t.Parallel()
	dir := upModule(t)
	env := os.Environ()
	env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "CLEANROOM_SUITE=") })
	up := exec.Command(cli(t), "up", "--wait", "10m")
	up.Dir, up.Env = dir, env
	out, err := up.CombinedOutput()
	suite, _, _ := strings.Cut(strings.TrimPrefix(string(out), "suite "), " ")
	if err != nil || !strings.HasPrefix(string(out), "suite ") {
		t.Fatalf("up: %v\n%s", err, out)
	}
	t.Cleanup(func() { runCLI(t, nil, "gc", "--all", "--suite", suite) })
	cmd := exec.Command("go", "test", "-count=1", "-v", "./...")
	cmd.Dir = dir
	cmd.Env = append(env, "CLEANROOM_SUMMARY=1", "CLEANROOM_GRACE_PERIOD=2", "GOFLAGS=-mod=mod -buildvcs=false")
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the tests after up: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "containers started 0, adopted 2,") {
		t.Errorf("the tests did not attach to suite %s, which up started:\n%s", suite, out)
	}
	if !waitPodGone(t, suite, time.Minute) {
		t.Errorf("the suite outlived the tests' 2 s grace by a minute (up's wait was 10 min)")
	}
}

// What up cannot do is a usage mistake, said before anything starts.
func TestUpRefusesWhatItCannotStart(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"up", "mysql"}, {"up", "--wait", "0s"}, {"up", "redis", "redis"}} {
		out, code := runCLI(t, nil, args...)
		if code != 2 || !strings.Contains(out, "cleanroom up: ") {
			t.Errorf("cleanroom %v (exit %d):\n%s", args, code, out)
		}
	}
}
