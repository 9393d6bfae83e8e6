package cleanroom_test

import (
	"context"
	"embed"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
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

//go:embed testdata/migrations
var migrationFiles embed.FS

// One line per test: a database of its own, migrated once for the run.
func ExampleNewDatabase() {
	migrations := isolation.SQLDir(migrationFiles, "testdata/migrations")
	testSignup := func(t *testing.T) {
		t.Parallel()
		db := cleanroom.NewDatabase(t, migrations)
		if _, err := db.Pool().Exec(t.Context(), "INSERT INTO users (email) VALUES ('a@example.com')"); err != nil {
			t.Fatal(err)
		}
		// db.URL, db.DB() (database/sql) and db.Conn() too; all closed,
		// and the database dropped, when the test ends.
	}
	_ = testSignup
}

// A logical Redis database of the test's own.
func ExampleRedisDB() {
	testRateLimit := func(t *testing.T) {
		t.Parallel()
		rdb := cleanroom.RedisDB(t)
		if err := rdb.Set(t.Context(), "hits", 1, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	_ = testRateLimit
}

// A custom TestMain: a configuration changed in code, then Run.
func ExampleEnvironment_Run() {
	var m *testing.M // (given to TestMain)
	if m == nil {
		return
	}
	cfg, err := cleanroom.LoadConfig("") // cleanroom.toml and CLEANROOM_* variables
	if err != nil {
		log.Fatal(err)
	}
	cfg.ContainerStartupTimeout = 2 * time.Minute
	env, err := cleanroom.New(context.Background(), cfg, cleanroom.Postgres())
	if err != nil {
		log.Fatal(err) // e.g. no Podman service, with the command that starts one
	}
	os.Exit(env.Run(m))
}

// Outside of tests: New, Get, Reset, Close.
func ExampleNew() {
	ctx := context.Background()
	cfg, err := cleanroom.LoadConfig("")
	if err != nil {
		log.Fatal(err)
	}
	env, err := cleanroom.New(ctx, cfg, cleanroom.Postgres())
	if err != nil {
		log.Fatal(err)
	}
	defer env.Close(ctx)
	c, err := env.Get(ctx, "postgres") // starts it, or reuses it when healthy
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.Postgres().URL())
	if err := env.Reset(ctx, "postgres"); err != nil { // empty every user table
		log.Fatal(err)
	}
}

// Any image as a service, with its own readiness probe and reset.
func ExampleGeneric() {
	minio := cleanroom.Generic("minio", "quay.io/minio/minio:RELEASE.2024-10-13T13-34-11Z",
		cleanroom.WithPort(9000),
		cleanroom.WithCmd("server", "/data"),
		cleanroom.WithTmpfs("/data", "rw,size=256m"),
		cleanroom.WithEnv("MINIO_ROOT_USER", "test"),
		cleanroom.WithEnv("MINIO_ROOT_PASSWORD", "test-secret"),
		cleanroom.WithReady(func(c *cleanroom.Container) healthcheck.Probe {
			return healthcheck.HTTP("http://"+c.Addr(9000)+"/minio/health/ready", 200)
		}),
		cleanroom.WithResetCommand("sh", "-c", "rm -rf /data/*"),
	)
	fmt.Println(minio.Name(), minio.Image())
	// cleanroom.Main(m, cleanroom.Postgres(), minio); then cleanroom.ContainerFor(t, "minio")
	// Output: minio quay.io/minio/minio:RELEASE.2024-10-13T13-34-11Z
}

// An option that does not apply to a service is an error, before anything
// starts.
func ExampleWithPostgresSetting() {
	_, err := cleanroom.New(context.Background(), cleanroom.Config{},
		cleanroom.Postgres(cleanroom.WithPostgresSetting("work_mem", "64MB")),
		cleanroom.Redis(cleanroom.WithPostgresSetting("work_mem", "64MB")))
	fmt.Println(err)
	// Output: cleanroom: service redis: WithPostgresSetting("work_mem", …) applies to Postgres only
}

// cleanroom.toml, found by walking up from the package to the module root.
func ExampleLoadConfig() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	_ = os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/shop\n"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "cleanroom.toml"), []byte("[cleanroom]\nkeep_warm = 900\n\n[cleanroom.images]\nminio = \"quay.io/minio/minio:latest\"\n"), 0o644)
	cfg, err := cleanroom.LoadConfig(dir)
	fmt.Println(cfg.KeepWarm, cfg.Images["minio"], err)

	_ = os.WriteFile(filepath.Join(dir, "cleanroom.toml"), []byte("[cleanroom]\nkeep_warm = 900\nkeep_worm = 1\n"), 0o644)
	_, err = cleanroom.LoadConfig(dir)
	fmt.Println(err != nil)
	// Output:
	// 15m0s quay.io/minio/minio:latest <nil>
	// true
}
