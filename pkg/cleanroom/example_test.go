package cleanroom_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
)

// The one line a test package needs: in TestMain.
func ExampleMain() {
	// func TestMain(m *testing.M) {
	var m *testing.M // (given to TestMain)
	if m == nil {
		return // keeps the example from running as a test
	}
	cleanroom.Main(m, cleanroom.Postgres(), cleanroom.Redis())
	// }
}

// A test takes the suite's servers; both start on first use and are shared.
func ExamplePostgresFor() {
	testSignup := func(t *testing.T) {
		t.Parallel()
		pg := cleanroom.PostgresFor(t)
		conn, err := pgx.Connect(context.Background(), pg.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		// … use conn; isolate data per test (own schema, table or database).
	}
	_ = testSignup
}

// Outside of tests, or in a custom TestMain: New, Get, Reset, Close.
func ExampleNew() {
	ctx := context.Background()
	cfg, err := cleanroom.LoadConfig("") // cleanroom.toml and CLEANROOM_* variables
	if err != nil {
		log.Fatal(err)
	}
	env, err := cleanroom.New(ctx, cfg, cleanroom.Postgres(), cleanroom.Redis())
	if err != nil {
		log.Fatal(err) // e.g. no Podman service, with the command that starts one
	}
	defer env.Close(ctx)

	c, err := env.Get(ctx, "postgres") // starts it, or reuses it when healthy
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.Postgres().URL())
	if err := env.Reset(ctx, "postgres"); err != nil { // TRUNCATE every user table
		log.Fatal(err)
	}
}

// Any image as a service, with its own readiness probe and reset.
func ExampleGeneric() {
	minio := cleanroom.Generic("minio", "quay.io/minio/minio:RELEASE.2024-10-13T13-34-11Z",
		cleanroom.Port(9000),
		cleanroom.Cmd("server", "/data"),
		cleanroom.Tmpfs("/data", "rw,size=256m"),
		cleanroom.Env("MINIO_ROOT_USER", "test"),
		cleanroom.Env("MINIO_ROOT_PASSWORD", "test-secret"),
		cleanroom.Ready(func(c *cleanroom.Container) healthcheck.Probe {
			return healthcheck.HTTP("http://"+c.Addr(9000)+"/minio/health/ready", 200)
		}),
		cleanroom.ResetCommand("sh", "-c", "rm -rf /data/*"),
	)
	_ = minio // cleanroom.Main(m, cleanroom.Postgres(), minio); then cleanroom.ContainerFor(t, "minio")
}

// Settings for a custom TestMain: singletons off for debugging a flaky test.
func ExampleRun() {
	var m *testing.M
	if m == nil {
		return
	}
	os.Exit(cleanroom.Run(m, cleanroom.Config{
		DisableSingletonContainers: true,
		ContainerStartupTimeout:    2 * time.Minute,
	}, cleanroom.Postgres()))
}
