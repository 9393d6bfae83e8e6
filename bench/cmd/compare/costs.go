package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cleanroom-go/cleanroom/bench/workload"
	"github.com/cleanroom-go/cleanroom/internal/isolate"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

const samples = 50

type costs struct {
	tx, schema, template, take, lease []time.Duration
	snapReady, snapTotal, plainReady  []time.Duration
}

// isolationCosts measures, in this process against Cleanroom's Postgres
// and Redis, what one test pays per isolation mode, and how fast Postgres
// starts from a snapshot.
func isolationCosts(ctx context.Context, pgImage, redisImage, tag string) (*costs, error) {
	var r costs
	images := map[string]string{"postgres": pgImage, "redis": redisImage}
	env, err := cleanroom.New(ctx, cleanroom.Config{Suite: "bench-iso-" + tag, GracePeriod: time.Millisecond, DisableSnapshots: true, Images: images},
		cleanroom.Postgres(), cleanroom.Redis())
	if err != nil {
		return nil, err
	}
	defer env.Close(ctx)
	pgc, err := env.Get(ctx, "postgres")
	if err != nil {
		return nil, err
	}
	rdc, err := env.Get(ctx, "redis")
	if err != nil {
		return nil, err
	}
	url := pgc.Postgres().URL()
	timeIt := func(dst *[]time.Duration, f func() error) error {
		for range samples {
			start := time.Now()
			if err := f(); err != nil {
				return err
			}
			*dst = append(*dst, time.Since(start))
		}
		return nil
	}

	plain, err := isolate.OpenWithSpares(ctx, url, 0)
	if err != nil {
		return nil, err
	}
	defer plain.Close()
	conn, err := pgxPool(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := timeIt(&r.tx, func() error {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		return tx.Rollback(ctx)
	}); err != nil {
		return nil, err
	}
	if err := timeIt(&r.schema, func() error {
		sc, err := plain.CreateSchema(ctx, "bench", workload.Migrations)
		if err != nil {
			return err
		}
		return plain.DropSchema(ctx, sc.Name)
	}); err != nil {
		return nil, err
	}
	first, err := plain.CreateDatabase(ctx, "bench", workload.Migrations) // builds the template
	if err != nil {
		return nil, err
	}
	_ = plain.DropDatabase(ctx, first.Name)
	if err := timeIt(&r.template, func() error {
		db, err := plain.CreateDatabase(ctx, "bench", workload.Migrations)
		if err != nil {
			return err
		}
		return plain.DropDatabase(ctx, db.Name)
	}); err != nil {
		return nil, err
	}

	warm, err := isolate.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	defer warm.Close()
	if db, err := warm.CreateDatabase(ctx, "bench", workload.Migrations); err == nil {
		warm.DropDatabaseLater(db.Name)
	}
	for range samples {
		for deadline := time.Now().Add(time.Minute); warm.SpareClones() < isolate.DefaultSpares && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		start := time.Now()
		db, err := warm.CreateDatabase(ctx, "bench", workload.Migrations)
		if err != nil {
			return nil, err
		}
		r.take = append(r.take, time.Since(start))
		warm.DropDatabaseLater(db.Name)
	}
	if err := timeIt(&r.lease, func() error {
		l, err := isolate.LeaseDB(ctx, rdc.Redis().Options(), "bench")
		if err != nil {
			return err
		}
		return l.Release(ctx)
	}); err != nil {
		return nil, err
	}

	// Start-up: plain (initdb) and from a snapshot.
	startOnce := func(suite string, snapshots bool) (*cleanroom.Container, cleanroom.Stats, time.Duration, error) {
		e, err := cleanroom.New(ctx, cleanroom.Config{Suite: suite, GracePeriod: time.Millisecond, DisableSnapshots: !snapshots, Images: images}, cleanroom.Postgres())
		if err != nil {
			return nil, cleanroom.Stats{}, 0, err
		}
		start := time.Now()
		c, err := e.Get(ctx, "postgres")
		total := time.Since(start)
		st := e.Stats()
		if cerr := e.Close(ctx); err == nil {
			err = cerr
		}
		waitGone(ctx, suite)
		return c, st, total, err
	}
	for i := range 3 {
		c, _, _, err := startOnce(fmt.Sprintf("bench-plain-%s-%d", tag, i), false)
		if err != nil {
			return nil, err
		}
		r.plainReady = append(r.plainReady, c.ReadyIn)
	}
	snapSuite := "bench-snapready-" + tag
	if _, _, _, err := startOnce(snapSuite, true); err != nil { // saves the snapshot
		return nil, err
	}
	for range 5 {
		c, st, total, err := startOnce(snapSuite, true)
		if err != nil {
			return nil, err
		}
		if st.Snapshot != 1 {
			return nil, fmt.Errorf("a start meant to use the snapshot did not: %+v", st)
		}
		r.snapReady = append(r.snapReady, c.ReadyIn)
		r.snapTotal = append(r.snapTotal, total)
	}
	if pc, err := podman.Connect(ctx, podman.Options{}); err == nil {
		removeSnapshots(ctx, pc, snapSuite)
		pc.Close()
	}
	return &r, nil
}

func waitGone(ctx context.Context, suite string) {
	c, err := podman.Connect(ctx, podman.Options{})
	if err != nil {
		return
	}
	defer c.Close()
	waitSuiteGone(ctx, c, suite)
}

func ms(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
	}
	if d < 10*time.Second {
		return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000)
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// render writes the report: the workload table, the ratios, the per-test
// costs, and the targets with whether this run met them.
func render(results []result, c *costs) string {
	var b strings.Builder
	host := hostInfo()
	fmt.Fprintf(&b, "# Benchmarks\n\nWritten by `make bench-compare` (bench/cmd/compare) on %s, %s. Do not edit by hand.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), host)
	fmt.Fprintf(&b, "## The workload: %d packages × %d tests\n\n", len(packages), workload.TestsPerPackage)
	b.WriteString("Each test takes a database of its own, cloned from a template with ten migrated tables, and a Redis database; it writes and reads both. Packages run as `go test ./...` runs them (as many at once as there are CPUs), tests in parallel. All modes use the same images on the same Podman service, in one run.\n\n")
	b.WriteString("| mode | wall time | ÷ Cleanroom cold | service containers started | peak memory of the containers |\n|---|---|---|---|---|\n")
	var cold time.Duration
	for _, r := range results {
		if r.name == "Cleanroom, cold" {
			cold = r.wall
		}
	}
	for _, r := range results {
		ratio := "—"
		if cold > 0 && r.name != "Cleanroom, cold" {
			ratio = fmt.Sprintf("%.1f×", r.wall.Seconds()/cold.Seconds())
		}
		fmt.Fprintf(&b, "| %s | %.1f s | %s | %d | %.0f MB |\n", r.name, r.wall.Seconds(), ratio, r.starts, r.peakMB)
	}
	b.WriteString("\n")
	for _, r := range results {
		fmt.Fprintf(&b, "- **%s**: %s.\n", r.name, r.note)
	}
	b.WriteString("\nService containers are counted from Podman's event stream (starts of anything but pods' infra containers, snapshot builders included).\n\n")

	b.WriteString("## What one test pays for its isolation\n\n")
	fmt.Fprintf(&b, "Medians of %d, set-up plus tear-down, against Cleanroom's Postgres (tmpfs, durability off) and Redis, ten-table migration set.\n\n", samples)
	b.WriteString("| operation | median |\n|---|---|\n")
	fmt.Fprintf(&b, "| transaction (BEGIN + ROLLBACK) | %s |\n", ms(median(c.tx)))
	fmt.Fprintf(&b, "| schema with the ten tables, create + drop | %s |\n", ms(median(c.schema)))
	fmt.Fprintf(&b, "| database cloned from the template, create + drop | %s |\n", ms(median(c.template)))
	fmt.Fprintf(&b, "| spare database, take | %s |\n", ms(median(c.take)))
	fmt.Fprintf(&b, "| Redis logical database, lease + release | %s |\n\n", ms(median(c.lease)))

	b.WriteString("## Postgres start-up\n\n| start | container start → ready (median) | with a new pod, first use → ready (median) |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| plain image (initdb on tmpfs) | %s | — |\n", ms(median(c.plainReady)))
	fmt.Fprintf(&b, "| from a snapshot | %s | %s |\n\n", ms(median(c.snapReady)), ms(median(c.snapTotal)))

	b.WriteString("## Targets (issue: faster than the limit others accept)\n\n")
	byName := map[string]time.Duration{}
	for _, r := range results {
		byName[r.name] = r.wall
	}
	check := func(ok bool, what string) {
		mark := "met"
		if !ok {
			mark = "**not met**"
		}
		fmt.Fprintf(&b, "- %s: %s\n", what, mark)
	}
	tc, tcTuned, perTest := byName["testcontainers-go, per package"], byName["testcontainers-go, per package, tuned"], byName["per-test containers"]
	check(tc.Seconds() >= 3*cold.Seconds(), fmt.Sprintf("Cleanroom cold ≥ 3× faster than testcontainers-go per package (%.1f×)", tc.Seconds()/cold.Seconds()))
	fmt.Fprintf(&b, "  - against testcontainers-go given Cleanroom's Postgres tuning: %.1f×\n", tcTuned.Seconds()/cold.Seconds())
	check(perTest.Seconds() >= 20*cold.Seconds(), fmt.Sprintf("Cleanroom cold ≥ 20× faster than per-test containers (%.1f×)", perTest.Seconds()/cold.Seconds()))
	check(byName["Cleanroom, keep-warm"] < cold, fmt.Sprintf("keep-warm faster still (%.1f s against %.1f s)", byName["Cleanroom, keep-warm"].Seconds(), cold.Seconds()))
	check(median(c.snapReady) <= 600*time.Millisecond, fmt.Sprintf("Postgres ready from a snapshot ≤ 0.6 s median (%s)", ms(median(c.snapReady))))
	check(median(c.take) <= 2*time.Millisecond, fmt.Sprintf("warm-pool take ≤ 2 ms median (%s)", ms(median(c.take))))
	return b.String()
}

func pgxPool(ctx context.Context, url string) (*pgxpool.Pool, error) { return pgxpool.New(ctx, url) }
