// Command compare runs the same integration-test workload (4 packages × 25
// tests; each test a database cloned from a migrated template, plus a Redis
// database) with per-test containers, with testcontainers-go (one Postgres
// and one Redis per package) and with Cleanroom (cold, from a snapshot,
// kept warm), all on this machine, the same images, in one run. It prints a
// table and writes BENCHMARKS.md.
//
//	make bench-compare        (from the repository root)
//	cd bench && go run ./cmd/compare [-o ../BENCHMARKS.md]
//
// It needs the Podman service and the images of `make images`; testcontainers-go
// talks to Podman's Docker-compatible socket with Ryuk off (its reaper image
// cannot be pulled here).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

var packages = []string{"p1", "p2", "p3", "p4"}

type result struct {
	name      string
	wall      time.Duration
	starts    int     // service containers started (Podman events)
	peakMB    float64 // peak memory of all containers, summed
	note      string
	failedRun error
}

func main() {
	out := flag.String("o", "../BENCHMARKS.md", "where to write the report")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	ctx := context.Background()
	c, err := podman.Connect(ctx, podman.Options{})
	if err != nil {
		return err
	}
	defer c.Close()
	pgImage, redisImage := envOr("CLEANROOM_POSTGRES_IMAGE", cleanroom.DefaultPostgresImage), envOr("CLEANROOM_REDIS_IMAGE", cleanroom.DefaultRedisImage)
	for _, img := range []string{pgImage, redisImage} {
		if ok, err := c.ImageExists(ctx, img); err != nil || !ok {
			return fmt.Errorf("image %s is missing (make images): %v", img, err)
		}
	}
	sock := strings.TrimPrefix(c.Endpoint().URI, "unix://")

	bin, err := os.MkdirTemp("", "cleanroom-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	fmt.Println("building the workload's test binaries …")
	for _, p := range packages {
		cmd := exec.Command("go", "test", "-c", "-o", filepath.Join(bin, p+".test"), "./workload/"+p)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", p, err)
		}
	}

	tag := fmt.Sprint(time.Now().Unix() % 1e6)
	base := []string{"CLEANROOM_POSTGRES_IMAGE=" + pgImage, "CLEANROOM_REDIS_IMAGE=" + redisImage}
	tcEnv := []string{"BENCH_MODE=testcontainers", "DOCKER_HOST=unix://" + sock,
		"TESTCONTAINERS_RYUK_DISABLED=true", "TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1"}
	modes := []struct {
		name, note string
		env        []string
		prime      bool // run once first, unmeasured (snapshot, warm pod)
		suite      string
	}{
		{name: "per-test containers", note: "every test starts its own Postgres and Redis (ADR-002's \"before\")",
			env: []string{"BENCH_MODE=per-test"}, suite: "bench-pertest-" + tag},
		{name: "testcontainers-go, per package", note: "one Postgres and one Redis per package (its TestMain pattern), module defaults: data on disk",
			env: append(tcEnv, "BENCH_TC_TMPFS=0")},
		{name: "testcontainers-go, per package, tuned", note: "the same, with Cleanroom's Postgres tuning: data on tmpfs, durability off",
			env: tcEnv},
		{name: "Cleanroom, cold", note: "no pod, no snapshot: one pod for the whole run",
			env: []string{"BENCH_MODE=cleanroom", "CLEANROOM_SNAPSHOTS=false"}, suite: "bench-cold-" + tag},
		{name: "Cleanroom, snapshot-cold", note: "no pod; Postgres from the snapshot an earlier run left",
			env: []string{"BENCH_MODE=cleanroom"}, prime: true, suite: "bench-snap-" + tag},
		{name: "Cleanroom, keep-warm", note: "the pod of an earlier run, kept warm",
			env: []string{"BENCH_MODE=cleanroom", "CLEANROOM_KEEP_WARM=600"}, prime: true, suite: "bench-warm-" + tag},
	}
	var results []result
	for _, m := range modes {
		env := append(append([]string{}, base...), m.env...)
		if m.suite != "" {
			env = append(env, "CLEANROOM_SUITE="+m.suite, "CLEANROOM_GRACE_PERIOD=2")
		}
		if m.prime {
			fmt.Printf("%-40s priming …\n", m.name)
			if _, err := runWorkload(bin, env); err != nil {
				return fmt.Errorf("%s (priming run): %w", m.name, err)
			}
			if !strings.Contains(strings.Join(env, " "), "KEEP_WARM") {
				waitSuiteGone(ctx, c, m.suite)
			}
		}
		fmt.Printf("%-40s running …\n", m.name)
		r := measure(ctx, c, bin, env)
		r.name, r.note = m.name, m.note
		if r.failedRun != nil {
			return fmt.Errorf("%s: %w", m.name, r.failedRun)
		}
		fmt.Printf("%-40s %8.1f s  %3d container starts  %6.0f MB peak\n", m.name, r.wall.Seconds(), r.starts, r.peakMB)
		results = append(results, r)
		if m.suite != "" {
			_ = c.RemovePod(ctx, "cleanroom-"+m.suite) // a kept-warm pod too
			waitSuiteGone(ctx, c, m.suite)
		}
		waitQuiet(ctx, c)
	}
	for _, m := range modes {
		if m.suite != "" {
			removeSnapshots(ctx, c, m.suite)
		}
	}

	fmt.Println("per-test isolation costs and start-up from a snapshot …")
	iso, err := isolationCosts(ctx, pgImage, redisImage, tag)
	if err != nil {
		return err
	}
	report := render(results, iso)
	fmt.Println()
	fmt.Print(report)
	return os.WriteFile(out, []byte(report), 0o644)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// runWorkload runs the four test binaries as `go test ./...` would: as
// many at once as there are CPUs, each in its package's directory.
func runWorkload(bin string, env []string) (time.Duration, error) {
	par := runtime.GOMAXPROCS(0)
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	for _, p := range packages {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cmd := exec.Command(filepath.Join(bin, p+".test"), "-test.count=1")
			cmd.Dir = filepath.Join("workload", p)
			cmd.Env = append(os.Environ(), env...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("%s: %v\n%s", p, err, tail(string(out), 30))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return time.Since(start), firstErr
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// measure runs the workload while sampling container memory, and counts
// the service containers started from Podman's event stream.
func measure(ctx context.Context, c *podman.Client, bin string, env []string) result {
	var r result
	since := time.Now()
	stop := make(chan struct{})
	peak := make(chan float64)
	go func() {
		var max float64
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				peak <- max
				return
			case <-t.C:
				if mb := memoryMB(ctx, c); mb > max {
					max = mb
				}
			}
		}
	}()
	r.wall, r.failedRun = runWorkload(bin, env)
	close(stop)
	r.peakMB = <-peak
	evs, err := c.Events(ctx, since, time.Time{})
	if err == nil {
		for _, e := range evs {
			if e.Type == "container" && e.Action == "start" && !strings.Contains(e.Actor.Attributes["image"], "pause") {
				r.starts++
			}
		}
	}
	return r
}

// memoryMB sums the memory use of every running container.
func memoryMB(ctx context.Context, c *podman.Client) float64 {
	stats, err := c.Stats(ctx)
	if err != nil {
		return 0
	}
	var sum int64
	for _, s := range stats {
		sum += s.MemUsage
	}
	return float64(sum) / 1e6
}

func waitSuiteGone(ctx context.Context, c *podman.Client, suite string) {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		pods, err := c.ListPods(ctx, map[string]string{labels.Suite: suite})
		if err == nil && len(pods) == 0 {
			return
		}
	}
}

// waitQuiet waits until no container runs (testcontainers-go's are removed
// by Terminate; per-test pods by t.Cleanup; the reaper's after its grace).
func waitQuiet(ctx context.Context, c *podman.Client) {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if s, err := c.Stats(ctx); err == nil && len(s) == 0 {
			return
		}
	}
}

func removeSnapshots(ctx context.Context, c *podman.Client, suite string) {
	imgs, err := c.ListImages(ctx, map[string]string{labels.Suite: suite})
	if err != nil {
		return
	}
	for _, img := range imgs {
		_ = c.RemoveImage(ctx, img.ID)
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
