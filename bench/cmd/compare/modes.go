package main

import (
	"context"
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

// The modes, by name; the report refers to them.
const (
	modeFloor    = "services already running (the floor)"
	modePerTest  = "per-test containers"
	modeTC       = "testcontainers-go, per package"
	modeTCTuned  = "testcontainers-go, per package, tuned"
	modeCold     = "Cleanroom, cold"
	modeSnapshot = "Cleanroom, snapshot-cold"
	modeWarm     = "Cleanroom, keep-warm"
)

// bench holds what every measurement needs.
type bench struct {
	c    *podman.Client
	bin  string   // the workload's test binaries
	reps int      // timed runs per mode
	tag  string   // makes this run's suite names unique
	base []string // environment of every mode
}

// sizeRun is the outcome of every mode at one workload size.
type sizeRun struct {
	packages int
	results  []result
}

// result is one mode's timed runs at one size.
type result struct {
	name   string
	note   string
	walls  []time.Duration
	starts int     // service containers started in the last timed run (Podman events)
	peakMB float64 // peak memory of all containers in the last timed run, summed
}

func (r result) median() time.Duration { return median(r.walls) }

// byName finds a mode's result; the zero result when it did not run.
func (s *sizeRun) byName(name string) result {
	for _, r := range s.results {
		if r.name == name {
			return r
		}
	}
	return result{}
}

// mode is one way of providing the services.
type mode struct {
	name, note string
	env        []string
	cleanroom  string // suite name when Cleanroom runs the services
	prime      bool   // run once first, untimed (a snapshot, a warm pod, a template)
	keepPod    bool   // the pod stays between the timed runs (keep-warm)
	reps       int    // timed runs; 0: bench.reps
	floor      bool   // start the floor services first
}

// size runs every mode at n packages.
func (b *bench) size(ctx context.Context, n int) (*sizeRun, error) {
	tag := fmt.Sprintf("%s-%d", b.tag, n)
	tcEnv := []string{"BENCH_MODE=testcontainers", "DOCKER_HOST=" + b.c.Endpoint().URI,
		"TESTCONTAINERS_RYUK_DISABLED=true", "TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1"}
	modes := []mode{
		{name: modeFloor, note: "a Postgres and a Redis (Cleanroom's, tuned the same) started before the timing, the template built by an untimed run: what any tool pays at the least",
			env: []string{"BENCH_MODE=floor"}, floor: true, prime: true},
		{name: modePerTest, note: "every test starts its own Postgres and Redis (ADR-002's \"before\"); timed once, at 4 packages only",
			env: []string{"BENCH_MODE=per-test"}, cleanroom: "bench-pertest-" + tag, reps: 1},
		{name: modeTC, note: "one Postgres and one Redis per package (its TestMain pattern), module defaults: data on disk; at 4 packages only",
			env: append(slices.Clone(tcEnv), "BENCH_TC_TMPFS=0")},
		{name: modeTCTuned, note: "the same, with Cleanroom's Postgres tuning: data on tmpfs, durability off",
			env: tcEnv},
		{name: modeCold, note: "no pod, no snapshot: one pod for the whole run",
			env: []string{"BENCH_MODE=cleanroom", "CLEANROOM_SNAPSHOTS=false"}, cleanroom: "bench-cold-" + tag},
		{name: modeSnapshot, note: "no pod; Postgres from the snapshot an earlier run left",
			env: []string{"BENCH_MODE=cleanroom"}, prime: true, cleanroom: "bench-snap-" + tag},
		{name: modeWarm, note: "the pod of an earlier run, kept warm (its template built)",
			env: []string{"BENCH_MODE=cleanroom", "CLEANROOM_KEEP_WARM=600"}, prime: true, keepPod: true, cleanroom: "bench-warm-" + tag},
	}
	pkgs := make([]string, n)
	for i := range pkgs {
		pkgs[i] = fmt.Sprintf("p%d", i+1)
	}
	out := &sizeRun{packages: n}
	for _, m := range modes {
		if n > 4 && (m.name == modePerTest || m.name == modeTC) {
			continue // minutes each, and the tuned variant tells the same story
		}
		r, err := b.mode(ctx, m, pkgs)
		if err != nil {
			return nil, fmt.Errorf("%d packages, %s: %w", n, m.name, err)
		}
		out.results = append(out.results, r)
	}
	for _, m := range modes {
		if m.cleanroom != "" {
			removeSnapshots(ctx, b.c, m.cleanroom)
		}
	}
	return out, nil
}

// mode times one mode: priming first where it needs it, then the timed
// runs, leaving nothing of it behind.
func (b *bench) mode(ctx context.Context, m mode, pkgs []string) (result, error) {
	env := append(slices.Clone(b.base), m.env...)
	if m.cleanroom != "" {
		env = append(env, "CLEANROOM_SUITE="+m.cleanroom, "CLEANROOM_GRACE_PERIOD=2")
	}
	if m.floor {
		stop, vars, err := b.floorServices(ctx, pkgs)
		if err != nil {
			return result{}, err
		}
		defer stop()
		env = append(env, vars...)
	}
	label := fmt.Sprintf("%2d packages, %s", len(pkgs), m.name)
	if m.prime {
		fmt.Printf("%-60s priming …\n", label)
		if _, err := runWorkload(b.bin, pkgs, env); err != nil {
			return result{}, fmt.Errorf("priming run: %w", err)
		}
		if m.cleanroom != "" && !m.keepPod {
			b.removeSuite(ctx, m.cleanroom)
		}
	}
	r := result{name: m.name, note: m.note}
	reps := cmp(m.reps, b.reps)
	for i := range reps {
		fmt.Printf("%-60s run %d of %d … ", label, i+1, reps)
		wall, starts, peak, err := measure(ctx, b.c, b.bin, pkgs, env)
		if err != nil {
			return result{}, err
		}
		fmt.Printf("%.1f s, %d container starts, %.0f MB peak\n", wall.Seconds(), starts, peak)
		r.walls, r.starts, r.peakMB = append(r.walls, wall), starts, peak
		if m.cleanroom != "" && !m.keepPod {
			b.removeSuite(ctx, m.cleanroom)
		}
		waitQuiet(ctx, b.c, m.floor || m.keepPod)
	}
	if m.cleanroom != "" {
		b.removeSuite(ctx, m.cleanroom) // a kept-warm pod too
	}
	return r, nil
}

func cmp(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// floorServices starts a Postgres and a Redis with Cleanroom (tuned as
// Cleanroom tunes them) in this process, before any timing, and returns
// the workload's variables that point at them.
func (b *bench) floorServices(ctx context.Context, pkgs []string) (func(), []string, error) {
	suite := fmt.Sprintf("bench-floor-%s-%d", b.tag, len(pkgs))
	images := map[string]string{}
	for _, kv := range b.base {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "CLEANROOM_POSTGRES_IMAGE":
			images["postgres"] = v
		case "CLEANROOM_REDIS_IMAGE":
			images["redis"] = v
		}
	}
	env, err := cleanroom.New(ctx, cleanroom.Config{Suite: suite, DisableSnapshots: true, GracePeriod: time.Second, Images: images},
		cleanroom.Postgres(), cleanroom.Redis())
	if err != nil {
		return nil, nil, err
	}
	pg, err := env.Get(ctx, "postgres")
	if err == nil {
		var rd *cleanroom.Container
		if rd, err = env.Get(ctx, "redis"); err == nil {
			stop := func() {
				_ = env.Close(ctx)
				b.removeSuite(ctx, suite)
			}
			return stop, []string{"BENCH_PG_URL=" + pg.Postgres().URL(), "BENCH_REDIS_URL=" + rd.Redis().URL()}, nil
		}
	}
	_ = env.Close(ctx)
	b.removeSuite(ctx, suite)
	return nil, nil, err
}

// removeSuite removes a suite's pod and waits until it is gone.
func (b *bench) removeSuite(ctx context.Context, suite string) {
	_ = b.c.RemovePod(ctx, "cleanroom-"+suite)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		pods, err := b.c.ListPods(ctx, map[string]string{labels.Suite: suite})
		if err == nil && len(pods) == 0 {
			return
		}
	}
}

// runWorkload runs the test binaries of pkgs as `go test ./...` would: as
// many at once as there are CPUs, each in its package's directory.
func runWorkload(bin string, pkgs, env []string) (time.Duration, error) {
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	for _, p := range pkgs {
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

// measure runs the workload while sampling container memory, and counts
// the service containers started from Podman's event stream.
func measure(ctx context.Context, c *podman.Client, bin string, pkgs, env []string) (wall time.Duration, starts int, peakMB float64, err error) {
	since := time.Now()
	stop := make(chan struct{})
	peak := make(chan float64)
	go func() {
		var max float64
		// Once a second: a stats call costs the engine CPU the starts
		// being timed need.
		t := time.NewTicker(time.Second)
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
	wall, err = runWorkload(bin, pkgs, env)
	close(stop)
	peakMB = <-peak
	if evs, eerr := c.Events(ctx, since, time.Time{}); eerr == nil {
		for _, e := range evs {
			if e.Type == "container" && e.Action == "start" && !strings.Contains(e.Actor.Attributes["image"], "pause") {
				starts++
			}
		}
	}
	return wall, starts, peakMB, err
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

// waitQuiet waits until no container runs (testcontainers-go's are removed
// by Terminate; per-test pods by t.Cleanup; the reaper's after its grace),
// or, where services are meant to stay (the floor, keep-warm), until no
// more than those run.
func waitQuiet(ctx context.Context, c *podman.Client, servicesStay bool) {
	allowed := 0
	if servicesStay {
		allowed = 3 // Postgres, Redis and the pod's infra container
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if s, err := c.Stats(ctx); err == nil && len(s) <= allowed {
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
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
