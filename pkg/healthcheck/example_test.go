package healthcheck_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
)

// Wait polls a probe, with backoff, until it succeeds: here one that
// answers on its third check.
func ExampleWait() {
	checks := 0
	probe := healthcheck.Func("warming service", func(ctx context.Context) error {
		checks++
		if checks < 3 {
			return errors.New("not ready yet")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := healthcheck.Wait(ctx, probe, healthcheck.Options{Initial: time.Millisecond})
	fmt.Println(err, checks)
	// Output: <nil> 3
}

// When the context ends first, the error wraps both the context's error and
// the probe's last one.
func ExampleWait_timeout() {
	errRefused := errors.New("connection refused")
	probe := healthcheck.Func("tcp connect 127.0.0.1:5432", func(ctx context.Context) error { return errRefused })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := healthcheck.Wait(ctx, probe, healthcheck.Options{})
	fmt.Println(errors.Is(err, context.DeadlineExceeded), errors.Is(err, errRefused))
	// Output: true true
}

// Wait for a Postgres server to answer SELECT 1.
func ExampleWait_postgres() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	probe := healthcheck.Postgres("postgres://postgres:secret@127.0.0.1:5432/postgres?sslmode=disable")
	defer probe.Close()
	if err := healthcheck.Wait(ctx, probe, healthcheck.Options{}); err != nil {
		log.Fatal(err) // names the probe, the time waited and the last reason
	}
}

// A Permanent error ends Wait at once: no retry can revive a container
// that exited.
func ExamplePermanent() {
	errExited := errors.New("container exited with code 1")
	checks := 0
	probe := healthcheck.Func("redis PING at 127.0.0.1:6379", func(ctx context.Context) error {
		checks++
		return healthcheck.Permanent(errExited)
	})
	err := healthcheck.Wait(context.Background(), probe, healthcheck.Options{})
	fmt.Println(errors.Is(err, errExited), checks)
	// Output: true 1
}

// LogLine waits for a line to appear in a container's output, here twice
// (Postgres images log it for the init server, then the real one).
func ExampleLogLine() {
	lines := []string{"database system is ready to accept connections"}
	logs := func(ctx context.Context) ([]string, error) { return lines, nil }
	probe := healthcheck.LogLine(logs, "ready to accept connections", 2)

	fmt.Println(probe)
	fmt.Println(probe.Check(context.Background()))
	lines = append(lines, "database system is shut down", "database system is ready to accept connections")
	fmt.Println(probe.Check(context.Background()))
	// Output:
	// log line "ready to accept connections" ×2
	// seen 1 of 2 times
	// <nil>
}

// Exec runs a command (in a container, through an ExecFunc such as
// cleanroom.Container.Exec) and succeeds when it exits 0.
func ExampleExec() {
	run := func(ctx context.Context, cmd []string) (int, string, error) {
		return 2, "127.0.0.1:5432 - no response\n", nil // what pg_isready says before the server is up
	}
	probe := healthcheck.Exec(run, "pg_isready", "-h", "127.0.0.1")
	fmt.Println(probe)
	fmt.Println(probe.Check(context.Background()))
	// Output:
	// exec "pg_isready -h 127.0.0.1"
	// exit code 2: 127.0.0.1:5432 - no response
}

// The built-in network probes (Redis PING, TCP connect, HTTP GET, Postgres
// SELECT 1) name what they check in Wait's errors.
func Example_probes() {
	fmt.Println(healthcheck.Redis("127.0.0.1:6379", "secret"))
	fmt.Println(healthcheck.TCP("127.0.0.1:9000"))
	fmt.Println(healthcheck.HTTP("http://127.0.0.1:9000/minio/health/ready", 200))
	fmt.Println(healthcheck.Postgres("postgres://postgres:secret@127.0.0.1:5432/postgres"))
	// Output:
	// redis PING at 127.0.0.1:6379
	// tcp connect 127.0.0.1:9000
	// http GET http://127.0.0.1:9000/minio/health/ready
	// postgres SELECT 1 at 127.0.0.1:5432
}
