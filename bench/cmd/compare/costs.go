package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cleanroom-go/cleanroom/bench/workload"
	"github.com/cleanroom-go/cleanroom/internal/isolate"
	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

const samples = 50

type costs struct {
	tx, schema, template, take, lease []time.Duration
	snapReady, snapTotal, plainReady  []time.Duration
	readyGap                          []time.Duration // server says ready → the library returns it
	engine                            engineSteps
}

// engineSteps are Podman's own steps of a cold start, each timed alone.
type engineSteps struct {
	podCreate, podStart, create, start []time.Duration
}

// engineFloor times, straight against the engine, the steps every cold
// start of a service in a new pod takes before the server's process runs:
// create a pod that publishes one port, start it (its infra container:
// the network namespace and the port forwarding), create a container in
// it and start it. The container runs sleep, so no server start is in the
// figures. No container manager that uses a pod can start a service
// sooner than their sum.
func engineFloor(ctx context.Context, image, tag string) (engineSteps, error) {
	var r engineSteps
	c, err := podman.Connect(ctx, podman.Options{})
	if err != nil {
		return r, err
	}
	defer c.Close()
	timed := func(dst *[]time.Duration, f func() error) error {
		start := time.Now()
		if err := f(); err != nil {
			return err
		}
		*dst = append(*dst, time.Since(start))
		return nil
	}
	for i := range 7 {
		name := fmt.Sprintf("cleanroom-bench-engine-%s-%d", tag, i)
		err := func() error {
			defer c.RemovePod(context.WithoutCancel(ctx), name)
			if err := timed(&r.podCreate, func() error {
				_, err := c.CreatePod(ctx, podman.PodSpec{Name: name, Ports: []podman.Port{{ContainerPort: 5432, HostIP: "127.0.0.1"}}})
				return err
			}); err != nil {
				return err
			}
			if err := timed(&r.podStart, func() error { return c.StartPod(ctx, name) }); err != nil {
				return err
			}
			if err := timed(&r.create, func() error {
				_, err := c.CreateContainer(ctx, podman.ContainerSpec{Name: name + "-c", Image: image, Pod: name,
					Entrypoint: []string{"sleep"}, Command: []string{"60"}, ImageVolumes: "tmpfs", StopTimeout: time.Second})
				return err
			}); err != nil {
				return err
			}
			return timed(&r.start, func() error { return c.StartContainer(ctx, name+"-c") })
		}()
		if err != nil {
			return r, fmt.Errorf("the engine's steps: %w", err)
		}
	}
	return r, nil
}

// isolationCosts measures, in this process against Cleanroom's Postgres
// and Redis, what one test pays per isolation mode, and how fast Postgres
// starts from a snapshot.
func isolationCosts(ctx context.Context, pgImage, redisImage, tag string) (*costs, error) {
	var r costs
	images := map[string]string{"postgres": pgImage, "redis": redisImage}
	pc, err := podman.Connect(ctx, podman.Options{})
	if err != nil {
		return nil, err
	}
	engineURI := pc.Endpoint().URI
	pc.Close()
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
		returned := time.Now()
		total := returned.Sub(start)
		if err == nil {
			if at, lerr := readyLogged(engineURI, c.ID); lerr == nil {
				r.readyGap = append(r.readyGap, returned.Sub(at))
			}
		}
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
	if r.engine, err = engineFloor(ctx, pgImage, tag); err != nil {
		return nil, err
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
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		pods, err := c.ListPods(ctx, map[string]string{labels.Suite: suite})
		if err == nil && len(pods) == 0 {
			return
		}
	}
}

// readyLogged is when Postgres in container id last logged that it is
// ready to accept connections, by the timestamps Podman keeps of its log.
func readyLogged(uri, id string) (time.Time, error) {
	out, err := exec.Command("podman", "--url", uri, "logs", "--timestamps", id).CombinedOutput()
	if err != nil {
		return time.Time{}, fmt.Errorf("podman logs: %v: %s", err, out)
	}
	var at time.Time
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.Contains(line, "ready to accept connections") {
			continue
		}
		ts, _, _ := strings.Cut(line, " ")
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			at = t
		}
	}
	if at.IsZero() {
		return at, fmt.Errorf("no ready line in the log of %s", id)
	}
	return at, nil
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

func pgxPool(ctx context.Context, url string) (*pgxpool.Pool, error) { return pgxpool.New(ctx, url) }
