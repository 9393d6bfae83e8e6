package faults

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
	"github.com/cleanroom-go/cleanroom/internal/pull"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// An unusable lease directory (another owner, a wrong mode, a symbolic
// link): each process keeps a pod of its own, says why on stderr, passes,
// and leaves nothing.
func TestUnusableLeaseDirectory(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, dir string)
	}{
		{"symlink", func(t *testing.T, dir string) {
			if err := os.Symlink(t.TempDir(), dir); err != nil {
				t.Fatal(err)
			}
		}},
		{"mode", func(t *testing.T, dir string) {
			if err := os.Mkdir(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
		}},
		{"owner", func(t *testing.T, dir string) {
			if os.Getuid() != 0 {
				t.Skip("making a directory of another user needs root")
			}
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(dir, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := t.TempDir()
			tc.prepare(t, filepath.Join(rt, "cleanroom"))
			suite := newSuite(t, "lease"+tc.name)
			decoys(t, suite)
			var procs []*proc
			pods := map[string]bool{}
			for range 2 {
				p := start(t, "hold", suite, "XDG_RUNTIME_DIR="+rt, "CLEANROOM_SNAPSHOTS=false")
				pods[strings.Fields(p.waitFor(t, "READY", 2*time.Minute))[1]] = true
				procs = append(procs, p)
			}
			if len(pods) != 2 {
				t.Errorf("two processes without a lease shared pod %v", pods)
			}
			for _, p := range procs {
				p.finish(t)
				if out := p.output(); !strings.Contains(out, "cannot share the suite's pod") {
					t.Errorf("the process did not say why it keeps a pod of its own:\n%s", out)
				}
			}
			waitGone(t, suite, 10*time.Second)
		})
	}
}

// Cancelled and expired contexts passed to every public call of the
// library that takes one: each returns the context's error, at once, and
// nothing is left.
func TestDoneContextsEverywhere(t *testing.T) {
	t.Parallel()
	suite := newSuite(t, "ctx")
	decoys(t, suite)
	cfg, err := cleanroom.LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Suite, cfg.GracePeriod, cfg.DisableSnapshots = suite, time.Second, true
	live := context.Background()
	env, err := cleanroom.New(live, cfg, cleanroom.Postgres(), cleanroom.Redis())
	if err != nil {
		t.Fatal(err)
	}
	pg, err := env.Get(live, "postgres") // something to reuse
	if err != nil {
		t.Fatal(err)
	}
	rd, err := env.Get(live, "redis")
	if err != nil {
		t.Fatal(err)
	}
	server, err := isolate.Open(live, pg.Postgres().URL())
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	cancelled, cancel := context.WithCancel(live)
	cancel()
	expired, cancel2 := context.WithDeadline(live, time.Now().Add(-time.Second))
	defer cancel2()
	for name, ctx := range map[string]context.Context{"cancelled": cancelled, "expired": expired} {
		want := ctx.Err()
		calls := map[string]func() error{
			"New": func() error { _, err := cleanroom.New(ctx, cfg, cleanroom.Postgres()); return err },
			"Get": func() error { _, err := env.Get(ctx, "postgres"); return err },
			"GetOrCreate": func() error {
				_, err := env.GetOrCreate(ctx, "extra", func() cleanroom.Service {
					return cleanroom.Generic("extra", busyboxImage, cleanroom.WithCmd("sleep", "60"))
				})
				return err
			},
			"Reset":    func() error { return env.Reset(ctx, "postgres") },
			"KubeYAML": func() error { _, err := env.KubeYAML(ctx); return err },
			"Connect":  func() error { _, err := podman.Connect(ctx, podman.Options{}); return err },
			"PullWithProgress": func() error {
				return pull.WithProgress(ctx, connect(t), "127.0.0.1:5000/cleanroom/none:1", pull.Options{})
			},
			"isolate.Open": func() error { _, err := isolate.Open(ctx, pg.Postgres().URL()); return err },
			"Server.CreateDatabase": func() error {
				_, err := server.CreateDatabase(ctx, "TestCtx", isolation.MigrateFunc("ctx-1", func(context.Context, *sql.DB) error { return nil }))
				return err
			},
			"Server.CreateSchema": func() error {
				_, err := server.CreateSchema(ctx, "TestCtx", isolation.MigrateFunc("ctx-1", func(context.Context, *sql.DB) error { return nil }))
				return err
			},
			"isolate.LeaseDB": func() error {
				_, err := isolate.LeaseDB(ctx, rd.Redis().Options(), "TestCtx")
				return err
			},
			"isolate.FlushUnleased": func() error { return isolate.FlushUnleased(ctx, rd.Redis().Options()) },
			"healthcheck.Wait": func() error {
				return healthcheck.Wait(ctx, healthcheck.TCP(pg.Addr(5432)), healthcheck.Options{})
			},
		}
		for call, f := range calls {
			began := time.Now()
			err := f()
			if !errors.Is(err, want) {
				t.Errorf("%s with a %s context: %v, want %v", call, name, err, want)
			}
			if took := time.Since(began); took > 2*time.Second {
				t.Errorf("%s with a %s context took %s", call, name, took)
			}
		}
	}
	// The shared container was never condemned by them.
	again, err := env.Get(live, "postgres")
	if err != nil || again.ID != pg.ID {
		t.Errorf("after the done contexts: %v, container %v (was %s)", err, again, pg.ID)
	}
	// Close with a done context still gives the lease back: the reaper
	// removes what is left after the grace period.
	_ = env.Close(cancelled)
	waitGone(t, suite, 20*time.Second)
}
