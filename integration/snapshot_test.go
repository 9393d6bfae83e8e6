package integration

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
)

// snapshots lists the snapshot images of a suite by key.
func snapshots(t *testing.T, suite string) map[string]string {
	t.Helper()
	imgs, err := connect(t).ListImages(context.Background(), map[string]string{labels.Suite: suite, labels.Snapshot: ""})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, img := range imgs {
		out[img.Labels[labels.Snapshot]] = img.ID
	}
	return out
}

func removeSnapshots(t *testing.T, suite string) {
	c := connect(t)
	for _, id := range snapshots(t, suite) {
		_ = c.RemoveImage(context.Background(), id)
	}
}

// startPostgres runs one environment of suite to a ready Postgres, checks
// it answers, and closes it (which waits for a snapshot being saved).
func startPostgres(t *testing.T, suite string, opts ...cleanroom.Option) cleanroom.Stats {
	t.Helper()
	cfg := cleanroom.Config{Suite: suite, GracePeriod: time.Millisecond, BindAddress: bindAddress,
		Images: map[string]string{"postgres": postgresImage}}
	env, err := cleanroom.New(context.Background(), cfg, cleanroom.Postgres(opts...))
	if err != nil {
		t.Fatal(err)
	}
	c, err := env.Get(context.Background(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(context.Background(), c.Postgres().URL())
	if err != nil {
		t.Fatalf("connect to a Postgres started from %s: %v", c.Image, err)
	}
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_database WHERE datname = 'cleanroom'").Scan(&n); err != nil || n != 1 {
		t.Errorf("the cleanroom database: %d, %v", n, err)
	}
	conn.Close(context.Background())
	st := env.Stats()
	// A start from a snapshot finds an initialised data directory: no
	// initdb, no init scripts. (The official image's VOLUME on PGDATA once
	// left snapshots empty: commits do not keep volumes.)
	if st.Snapshot == 1 {
		logs, err := connect(t).Logs(context.Background(), c.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if all := strings.Join(logs, "\n"); strings.Contains(all, "init process complete") {
			t.Errorf("the start from snapshot %s initialised the database again:\n%s", c.Image, all)
		}
	}
	if err := env.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, suite)
	return st
}

func TestSnapshotStartUpAndInvalidation(t *testing.T) {
	// Not parallel: it sets CLEANROOM_REBUILD.
	suite := "it-snap-" + randomHex(4)
	t.Cleanup(func() { removeSnapshots(t, suite) })
	// The image keeps its data in a volume, as the official one does: the
	// case snapshots must handle.
	out, err := exec.Command("podman", "image", "inspect", "--format", "{{json .Config.Volumes}}", postgresImage).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"/var/lib/postgresql/data"`) {
		t.Fatalf("%s declares no VOLUME /var/lib/postgresql/data (as the official image does): %s %v", postgresImage, out, err)
	}

	if st := startPostgres(t, suite); st.Started != 1 || st.Snapshot != 0 {
		t.Fatalf("first run: %+v; want a plain cold start", st)
	}
	first := snapshots(t, suite)
	if len(first) != 1 {
		t.Fatalf("snapshots after the first run: %v; want one", first)
	}
	// The password does not stay in the snapshot image for anyone who can
	// inspect images.
	for _, id := range first {
		out, err := exec.Command("podman", "image", "inspect", "--format", "{{json .Config.Env}}", id).CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range strings.Split(strings.Trim(string(out), "[]\n"), ",") {
			if k, v, _ := strings.Cut(strings.Trim(kv, `"`), "="); k == "POSTGRES_PASSWORD" && v != "" {
				t.Errorf("the snapshot image's config holds the password: %s", kv)
			}
		}
	}
	if st := startPostgres(t, suite); st.Snapshot != 1 {
		t.Errorf("second run: %+v; want a start from the snapshot", st)
	}
	if got := snapshots(t, suite); len(got) != 1 {
		t.Errorf("snapshots after the second run: %v; want the same one", got)
	}

	// Another definition: the snapshot does not fit, a new one replaces it.
	if st := startPostgres(t, suite, cleanroom.WithPostgresSetting("work_mem", "8MB")); st.Snapshot != 0 {
		t.Errorf("changed definition: %+v; the old snapshot must not be used", st)
	}
	got := snapshots(t, suite)
	for key := range first {
		if _, still := got[key]; still {
			t.Errorf("the snapshot of the old definition is still there: %v", got)
		}
	}
	if len(got) != 1 {
		t.Errorf("snapshots after the definition changed: %v; want only the new one", got)
	}

	// CLEANROOM_REBUILD=1 in a new run drops it: a plain cold start again,
	// which saves a new snapshot...
	t.Setenv("CLEANROOM_RUN_ID", os.Getenv("CLEANROOM_RUN_ID")+"/rebuild-"+randomHex(4)) // under make test's run: its leak check sees what this makes
	t.Setenv("CLEANROOM_REBUILD", "1")
	if st := startPostgres(t, suite, cleanroom.WithPostgresSetting("work_mem", "8MB")); st.Snapshot != 0 {
		t.Errorf("with CLEANROOM_REBUILD=1: %+v; want a plain start", st)
	}
	// ...that the next process of the same run uses: once per run, not once
	// per package.
	if st := startPostgres(t, suite, cleanroom.WithPostgresSetting("work_mem", "8MB")); st.Snapshot != 1 {
		t.Errorf("with CLEANROOM_REBUILD=1, a second process of the run: %+v; want a start from the snapshot the first rebuilt", st)
	}
}

// A suite name may hold what an image name may not (upper case,
// underscores, dots); its snapshot is saved and used all the same. Podman
// once refused the commit ("repository name must be lowercase"), and
// every cold start of such a suite initialised Postgres again.
func TestSnapshotOfASuiteNamedInUpperCase(t *testing.T) {
	t.Parallel()
	suite := "It_Snap.Upper-" + randomHex(4)
	t.Cleanup(func() { removeSnapshots(t, suite) })
	if st := startPostgres(t, suite); st.Started != 1 || st.Snapshot != 0 {
		t.Fatalf("first run: %+v; want a plain cold start", st)
	}
	if got := snapshots(t, suite); len(got) != 1 {
		t.Fatalf("snapshots of suite %s after the first run: %v; want one", suite, got)
	}
	if st := startPostgres(t, suite); st.Snapshot != 1 {
		t.Errorf("second run: %+v; want a start from the snapshot", st)
	}
}
