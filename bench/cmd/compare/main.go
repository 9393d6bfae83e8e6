// Command compare runs the same integration-test workload (each test a
// database cloned from a migrated template, plus a Redis database) at 4
// and at 16 packages of 25 tests: against services that already run (the
// floor), with per-test containers, with testcontainers-go (one Postgres
// and one Redis per package) and with Cleanroom (cold, from a snapshot,
// kept warm), all on this machine, the same images, in one run. Every
// mode is timed three times (per-test containers once); the report gives
// medians, and each mode's overhead over the floor. It prints a table and
// writes BENCHMARKS.md.
//
//	make bench-compare        (from the repository root)
//	cd bench && go run ./cmd/compare [-o ../BENCHMARKS.md] [-reps 3]
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
	"strings"
	"time"

	"github.com/cleanroom-go/cleanroom/bench/internal/section"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// packageCounts are the workload sizes, in packages of 25 tests.
var packageCounts = []int{4, 16}

func main() {
	out := flag.String("o", "../BENCHMARKS.md", "where to write the report")
	reps := flag.Int("reps", 3, "timed runs per mode (per-test containers: 1)")
	flag.Parse()
	if err := run(*out, *reps); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func run(out string, reps int) error {
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
	// Peak memory and the wait for a quiet engine read container stats;
	// one container in a broken state fails that call for all of them.
	if _, err := c.Stats(ctx); err != nil {
		return fmt.Errorf("the engine cannot report container stats, which the memory column and the waits between runs need (see podman stats --no-stream): %w", err)
	}
	bin, err := os.MkdirTemp("", "cleanroom-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	maxPkgs := packageCounts[len(packageCounts)-1]
	fmt.Printf("building the workload's %d test binaries …\n", maxPkgs)
	for i := 1; i <= maxPkgs; i++ {
		p := fmt.Sprintf("p%d", i)
		cmd := exec.Command("go", "test", "-c", "-o", filepath.Join(bin, p+".test"), "./workload/"+p)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", p, err)
		}
	}

	b := &bench{c: c, bin: bin, reps: reps, tag: fmt.Sprint(time.Now().Unix() % 1e6),
		base: []string{"CLEANROOM_POSTGRES_IMAGE=" + pgImage, "CLEANROOM_REDIS_IMAGE=" + redisImage}}
	var runs []*sizeRun
	for _, n := range packageCounts {
		r, err := b.size(ctx, n)
		if err != nil {
			return err
		}
		runs = append(runs, r)
	}

	fmt.Println("per-test isolation costs and Postgres start-up …")
	iso, err := isolationCosts(ctx, pgImage, redisImage, b.tag)
	if err != nil {
		return err
	}
	report := render(runs, iso, reps)
	fmt.Println()
	fmt.Print(report)
	// Keep the per-service figures that make bench-services wrote.
	if old, err := os.ReadFile(out); err == nil {
		if kept := section.Of(string(old)); kept != "" {
			report = strings.TrimRight(report, "\n") + "\n\n" + kept
		}
	}
	return os.WriteFile(out, []byte(report), 0o644)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
