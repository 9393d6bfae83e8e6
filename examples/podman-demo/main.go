// Command podman-demo starts PostgreSQL and Redis in one Podman pod through
// pkg/podman, waits until both answer, runs a query and a PING, prints how
// long each step took, and removes the pod again (also on Ctrl-C).
//
//	make demo
//	# or, with an engine and images of your own:
//	CLEANROOM_POSTGRES_IMAGE=docker.io/library/postgres:15 go run ./examples/podman-demo
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// step prints how long a step took.
func step(name string, start time.Time) {
	fmt.Printf("  %-34s %8.1f ms\n", name, float64(time.Since(start).Microseconds())/1000)
}

func run(ctx context.Context) (err error) {
	pgImage := envOr("CLEANROOM_POSTGRES_IMAGE", "docker.io/library/postgres:15")
	redisImage := envOr("CLEANROOM_REDIS_IMAGE", "docker.io/library/redis:7")
	total := time.Now()

	t := time.Now()
	c, err := podman.Connect(ctx, podman.Options{})
	if err != nil {
		return err
	}
	defer c.Close()
	ep := c.Endpoint()
	fmt.Printf("Podman API %s at %s (%s)\n", c.APIVersion(), ep.URI, ep.Source)
	step("connect", t)

	for _, img := range []string{pgImage, redisImage} {
		ok, err := c.ImageExists(ctx, img)
		if err != nil {
			return err
		}
		if !ok {
			t = time.Now()
			fmt.Printf("  pulling %s …\n", img)
			if err := c.Pull(ctx, img, nil); err != nil {
				return fmt.Errorf("%w\n(on machines without a registry, build local images: make images)", err)
			}
			step("pull "+img, t)
		}
	}

	pod := "cleanroom-demo-" + randomHex(4)
	labels := map[string]string{"io.cleanroom.demo": "podman-demo"}
	t = time.Now()
	if _, err := c.CreatePod(ctx, podman.PodSpec{Name: pod, Labels: labels,
		Ports: []podman.Port{{ContainerPort: 5432}, {ContainerPort: 6379}}}); err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		t := time.Now()
		if rerr := c.RemovePod(rctx, pod); rerr != nil {
			err = errors.Join(err, rerr)
			return
		}
		step("remove pod", t)
		fmt.Printf("  %-34s %8.1f ms\n", "total", float64(time.Since(total).Microseconds())/1000)
	}()
	step("create pod "+pod, t)

	password := randomHex(12)
	t = time.Now()
	pgID, err := c.CreateContainer(ctx, podman.ContainerSpec{
		Name: pod + "-postgres", Image: pgImage, Pod: pod, Labels: labels,
		Env:     map[string]string{"POSTGRES_PASSWORD": password, "PGDATA": "/var/lib/postgresql/data/pgdata"},
		Command: []string{"postgres", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"},
		Tmpfs:   map[string]string{"/var/lib/postgresql/data": "rw,mode=1777"},
		Timeout: 10 * time.Minute, // even if this program is killed, conmon ends it
	})
	if err != nil {
		return err
	}
	rdID, err := c.CreateContainer(ctx, podman.ContainerSpec{
		Name: pod + "-redis", Image: redisImage, Pod: pod, Labels: labels,
		Command: []string{"redis-server", "--save", ""}, Timeout: 10 * time.Minute,
	})
	if err != nil {
		return err
	}
	step("create containers", t)

	t = time.Now()
	if err := c.StartPod(ctx, pod); err != nil {
		return err
	}
	step("start pod", t)
	info, err := c.InspectPod(ctx, pod)
	if err != nil {
		return err
	}
	pgAddr, _ := info.HostPort(5432)
	rdAddr, _ := info.HostPort(6379)
	pgURL := fmt.Sprintf("postgres://postgres:%s@%s:%d/postgres?sslmode=disable", password, pgAddr.IP, pgAddr.Port)
	rdHostPort := fmt.Sprintf("%s:%d", rdAddr.IP, rdAddr.Port)

	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	ready := time.Now()
	waitErr := make(chan error, 2)
	for _, w := range []struct {
		id    string
		probe healthcheck.Probe
		name  string
	}{{rdID, healthcheck.Redis(rdHostPort, ""), "redis ready (PING)"}, {pgID, healthcheck.Postgres(pgURL), "postgres ready (SELECT 1)"}} {
		go func() {
			err := healthcheck.Wait(wctx, w.probe, healthcheck.Options{})
			if err != nil {
				logs, _ := c.Logs(context.WithoutCancel(ctx), w.id, 20)
				err = fmt.Errorf("%w\nlast log lines:\n  %s", err, strings.Join(logs, "\n  "))
			} else {
				step(w.name, ready)
			}
			waitErr <- err
		}()
	}
	if err := errors.Join(<-waitErr, <-waitErr); err != nil {
		return err
	}

	t = time.Now()
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return err
	}
	var version string
	err = conn.QueryRow(ctx, "SELECT version()").Scan(&version)
	conn.Close(ctx)
	if err != nil {
		return err
	}
	step("query", t)
	fmt.Printf("    %s\n", version)
	t = time.Now()
	if err := healthcheck.Redis(rdHostPort, "").Check(ctx); err != nil {
		return err
	}
	step("PING → PONG", t)
	return nil
}
