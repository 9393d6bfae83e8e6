package isolation_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

// The helper process: this test binary re-executed with these variables
// creates one database from a template and exits.
const (
	helperEnv     = "CLEANROOM_TEST_TEMPLATE_HELPER"
	helperURL     = "CLEANROOM_TEST_TEMPLATE_URL"
	helperVersion = "CLEANROOM_TEST_TEMPLATE_VERSION"
)

// buildsMigrator records every build of its template in the table builds of
// the admin database (outside the template), slowly, so that concurrent
// builders would overlap.
func buildsMigrator(adminURL, version string) isolation.Migrator {
	return isolation.MigrateFunc(version, func(ctx context.Context, db *sql.DB) error {
		conn, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "INSERT INTO builds (version, pid) VALUES ($1, $2)", version, os.Getpid()); err != nil {
			return err
		}
		time.Sleep(300 * time.Millisecond)
		_, err = db.ExecContext(ctx, "CREATE TABLE built_by (pid int)")
		return err
	})
}

func helperMain() int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url, version := os.Getenv(helperURL), os.Getenv(helperVersion)
	s, err := isolate.Open(ctx, url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	db, err := s.CreateDatabase(ctx, "helper", buildsMigrator(url, version))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := s.DropDatabase(ctx, db.Name); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func TestTemplateIsBuiltOnceAcrossProcesses(t *testing.T) {
	pg := cleanroom.PostgresFor(t)
	ctx := context.Background()
	if _, err := adminPool(t, pg).Exec(ctx, "CREATE TABLE IF NOT EXISTS builds (version text, pid int)"); err != nil {
		t.Fatal(err)
	}
	version := fmt.Sprintf("two-processes-%d", time.Now().UnixNano())

	var wg sync.WaitGroup
	outs := make([]string, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"=1", helperURL+"="+pg.URL(), helperVersion+"="+version)
			out, err := cmd.CombinedOutput()
			outs[i], errs[i] = string(out), err
		}()
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("helper process %d: %v\n%s", i, errs[i], outs[i])
		}
	}
	if n := count(t, pg, "SELECT count(*) FROM builds WHERE version = $1", version); n != 1 {
		t.Errorf("the template was built %d times by two processes, want once", n)
	}
}

func TestUnfinishedTemplateIsRebuilt(t *testing.T) {
	pg := cleanroom.PostgresFor(t)
	ctx := context.Background()
	if _, err := adminPool(t, pg).Exec(ctx, "CREATE TABLE IF NOT EXISTS builds (version text, pid int)"); err != nil {
		t.Fatal(err)
	}
	version := fmt.Sprintf("crashed-%d", time.Now().UnixNano())
	m := buildsMigrator(pg.URL(), version)

	// A build that crashed: the template database exists but was never
	// marked finished.
	s, err := isolate.Open(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	db, err := s.CreateDatabase(ctx, t.Name(), m)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DropDatabase(ctx, db.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := adminPool(t, pg).Exec(ctx, "ALTER DATABASE "+pgx.Identifier{db.Template}.Sanitize()+" WITH IS_TEMPLATE false ALLOW_CONNECTIONS true"); err != nil {
		t.Fatal(err)
	}

	s2, err := isolate.Open(ctx, pg.URL()) // a new process, as far as caches go
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	db2, err := s2.CreateDatabase(ctx, t.Name(), m)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.DropDatabase(ctx, db2.Name)
	if n := count(t, pg, "SELECT count(*) FROM builds WHERE version = $1", version); n != 2 {
		t.Errorf("%d builds; want the unfinished template rebuilt (2)", n)
	}

	// CLEANROOM_REBUILD=1 rebuilds a finished one too, once per run.
	t.Setenv("CLEANROOM_RUN_ID", fmt.Sprintf("%s/rebuild-%d", os.Getenv("CLEANROOM_RUN_ID"), time.Now().UnixNano())) // under make test's run: its leak check sees what this makes
	t.Setenv("CLEANROOM_REBUILD", "1")
	s3, err := isolate.Open(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	db3, err := s3.CreateDatabase(ctx, t.Name(), m)
	if err != nil {
		t.Fatal(err)
	}
	defer s3.DropDatabase(ctx, db3.Name)
	if n := count(t, pg, "SELECT count(*) FROM builds WHERE version = $1", version); n != 3 {
		t.Errorf("%d builds; want a rebuild with CLEANROOM_REBUILD=1 (3)", n)
	}
	// Two more processes of the same run (two packages of one go test
	// ./...) clone what the first rebuilt.
	var wg sync.WaitGroup
	outs := make([]string, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"=1", helperURL+"="+pg.URL(), helperVersion+"="+version)
			out, err := cmd.CombinedOutput()
			outs[i], errs[i] = string(out), err
		}()
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("helper process %d: %v\n%s", i, errs[i], outs[i])
		}
	}
	if n := count(t, pg, "SELECT count(*) FROM builds WHERE version = $1", version); n != 3 {
		t.Errorf("%d builds; with CLEANROOM_REBUILD=1 the other processes of the run must not rebuild (3)", n)
	}
	// A new run rebuilds it again.
	t.Setenv("CLEANROOM_RUN_ID", fmt.Sprintf("%s/rebuild-again-%d", os.Getenv("CLEANROOM_RUN_ID"), time.Now().UnixNano()))
	s4, err := isolate.Open(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer s4.Close()
	db4, err := s4.CreateDatabase(ctx, t.Name(), m)
	if err != nil {
		t.Fatal(err)
	}
	defer s4.DropDatabase(ctx, db4.Name)
	if n := count(t, pg, "SELECT count(*) FROM builds WHERE version = $1", version); n != 4 {
		t.Errorf("%d builds; want a rebuild in a new run (4)", n)
	}
}

func TestFailedTestKeepsItsDatabase(t *testing.T) {
	pg := cleanroom.PostgresFor(t)
	exists := func(name string) bool {
		return count(t, pg, "SELECT count(*) FROM pg_database WHERE datname = $1", name) == 1
	}

	passing := &recordingTB{name: "TestPasses"}
	db := isolation.NewDatabase(passing, pg.URL(), migrations)
	passing.finish()
	isolate.FlushAll() // the drop happens in the background
	if exists(db.Name) || len(passing.logs) != 0 || len(passing.errs) != 0 {
		t.Errorf("a passing test's database: exists %v, logs %v, errors %v; want dropped, silent", exists(db.Name), passing.logs, passing.errs)
	}

	failing := &recordingTB{name: "TestFails"}
	db = isolation.NewDatabase(failing, pg.URL(), migrations)
	failing.failed = true
	failing.finish()
	if !exists(db.Name) {
		t.Fatalf("a failed test's database %s was dropped", db.Name)
	}
	// The log line opens the database in one command, without the
	// password in it (test logs end up in CI logs): psql "$(cat FILE)".
	if len(failing.logs) != 1 || !strings.Contains(failing.logs[0], "DROP DATABASE") {
		t.Fatalf("the kept database is not logged: %v", failing.logs)
	}
	if strings.Contains(failing.logs[0], pg.Password()) {
		t.Errorf("the log line shows the password: %s", failing.logs[0])
	}
	_, rest, ok := strings.Cut(failing.logs[0], `psql "$(cat `)
	file, _, _ := strings.Cut(rest, `)"`)
	if b, err := os.ReadFile(file); !ok || err != nil || strings.TrimSpace(string(b)) != db.URL {
		t.Errorf("the log line %q does not lead to the database's URL (file %q: %v)", failing.logs[0], file, err)
	}
	if _, err := adminPool(t, pg).Exec(context.Background(), "DROP DATABASE "+pgx.Identifier{db.Name}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}

	failing = &recordingTB{name: "TestFailsToo"}
	sc := isolation.NewSchema(failing, pg.URL(), migrations)
	failing.failed = true
	failing.finish()
	if n := count(t, pg, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", sc.Name); n != 1 || len(failing.logs) != 1 || !strings.Contains(failing.logs[0], sc.Name) {
		t.Errorf("a failed test's schema: %d left, logs %v", n, failing.logs)
	}
	if _, err := adminPool(t, pg).Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{sc.Name}.Sanitize()+" CASCADE"); err != nil {
		t.Fatal(err)
	}
}

// A spare clone kept for a failed test survives the sweep of the next
// Server, which drops the clones of processes that are gone.
func TestKeptSpareCloneSurvivesTheNextSweep(t *testing.T) {
	t.Parallel()
	pg := cleanroom.PostgresFor(t)
	ctx := context.Background()
	exists := func(name string) bool {
		return count(t, pg, "SELECT count(*) FROM pg_database WHERE datname = $1", name) == 1
	}
	s, err := isolate.Open(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateDatabase(ctx, t.Name(), migrations); err != nil { // builds the template, starts the filler
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); s.SpareClones() < 2 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	kept, err := s.CreateDatabase(ctx, t.Name(), migrations)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := s.CreateDatabase(ctx, t.Name(), migrations)
	if err != nil {
		t.Fatal(err)
	}
	for _, db := range []*isolate.Database{kept, plain} {
		if !strings.HasPrefix(db.Name, s.ClonePrefix()) {
			t.Fatalf("%s is not a spare clone", db.Name)
		}
	}
	if err := s.KeepDatabase(ctx, kept.Name); err != nil {
		t.Fatal(err)
	}
	s.Close() // its owner lock goes: its taken clones look like a dead process's

	next, err := isolate.Open(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	if !exists(kept.Name) {
		t.Errorf("the kept clone %s was swept", kept.Name)
	}
	if exists(plain.Name) {
		t.Errorf("the clone %s of a closed Server was not swept", plain.Name)
	}
	if err := next.DropDatabase(ctx, kept.Name); err != nil {
		t.Fatal(err)
	}
}

func TestSparesAreReadyClonesAndNoneIsLeft(t *testing.T) {
	pg := cleanroom.PostgresFor(t)
	ctx := context.Background()
	// A clone left by a process that died: its owner holds no lock.
	if _, err := adminPool(t, pg).Exec(ctx, "CREATE DATABASE tp_deadbeef_leftover"); err != nil {
		t.Fatal(err)
	}
	s, err := isolate.Open(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, pg, "SELECT count(*) FROM pg_database WHERE datname = 'tp_deadbeef_leftover'"); n != 0 {
		t.Errorf("the clone of a dead owner survived Open")
	}
	db, err := s.CreateDatabase(ctx, t.Name(), migrations) // builds (or finds) the template, starts the filler
	if err != nil {
		t.Fatal(err)
	}
	s.DropDatabaseLater(db.Name)
	for deadline := time.Now().Add(30 * time.Second); s.SpareClones() < isolate.DefaultSpares && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	mine := s.ClonePrefix() + "%"
	if n := count(t, pg, `SELECT count(*) FROM pg_database WHERE datname LIKE $1`, mine); n != isolate.DefaultSpares {
		t.Fatalf("%d spare clones on the server, want %d", n, isolate.DefaultSpares)
	}
	taken, err := s.CreateDatabase(ctx, t.Name(), migrations)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(taken.Name, s.ClonePrefix()) {
		t.Errorf("with the spares ready, got %s, not a spare clone", taken.Name)
	}
	conn, err := pgx.Connect(ctx, taken.URL)
	if err != nil {
		t.Fatal(err)
	}
	var tables int
	err = conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables)
	conn.Close(ctx)
	if err != nil || tables != 11 {
		t.Errorf("the spare clone has %d tables, %v; want the template's 11", tables, err)
	}
	s.DropDatabaseLater(taken.Name)
	s.Close()
	if n := count(t, pg, `SELECT count(*) FROM pg_database WHERE datname LIKE $1`, mine); n != 0 {
		t.Errorf("%d pool databases survive Close", n)
	}
}

// Advisory locks belong to a database. A Server opened on another database
// of the same cluster must still see that a live Server's clones are in
// use, and leave them alone.
func TestSweepSeesOwnersOpenedOnAnotherDatabase(t *testing.T) {
	t.Parallel()
	pg := cleanroom.PostgresFor(t)
	ctx := context.Background()
	other := "sweep_other_" + strings.ToLower(randomSuffix())
	if _, err := adminPool(t, pg).Exec(ctx, "CREATE DATABASE "+other); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = adminPool(t, pg).Exec(context.Background(), "DROP DATABASE IF EXISTS "+other+" WITH (FORCE)")
	})
	otherURL := strings.Replace(pg.URL(), "/"+pg.Database()+"?", "/"+other+"?", 1)

	live, err := isolate.Open(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	db, err := live.CreateDatabase(ctx, t.Name(), migrations)
	if err != nil {
		t.Fatal(err)
	}
	defer live.DropDatabaseLater(db.Name)
	for deadline := time.Now().Add(30 * time.Second); live.SpareClones() < 1 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	inUse, err := live.CreateDatabase(ctx, t.Name(), migrations)
	if err != nil {
		t.Fatal(err)
	}
	defer live.DropDatabaseLater(inUse.Name)
	if !strings.HasPrefix(inUse.Name, live.ClonePrefix()) {
		t.Fatalf("%s is not a spare clone", inUse.Name)
	}

	sweeper, err := isolate.Open(ctx, otherURL) // sweeps at Open
	if err != nil {
		t.Fatal(err)
	}
	sweeper.Close()
	if n := count(t, pg, "SELECT count(*) FROM pg_database WHERE datname = $1", inUse.Name); n != 1 {
		t.Fatalf("the clone %s of a live Server was dropped by a Server opened on database %s", inUse.Name, other)
	}
}

// Sweeps race with owners that keep a clone and go: a kept clone is never
// dropped, and once a Server is open, no clone of an owner that had gone
// before it opened is left, even while other Servers sweep at the same time.
func TestSweepRacesWithKeepAndClose(t *testing.T) {
	t.Parallel()
	pg := cleanroom.PostgresFor(t)
	ctx := context.Background()
	exists := func(name string) bool {
		return count(t, pg, "SELECT count(*) FROM pg_database WHERE datname = $1", name) == 1
	}
	stop := make(chan struct{})
	var sweepers sync.WaitGroup
	for range 3 {
		sweepers.Add(1)
		go func() {
			defer sweepers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, err := isolate.OpenWithSpares(ctx, pg.URL(), 1)
				if err != nil {
					t.Error(err)
					return
				}
				s.Close()
			}
		}()
	}
	defer func() { close(stop); sweepers.Wait() }()

	for i := range 15 {
		owner, err := isolate.OpenWithSpares(ctx, pg.URL(), 2)
		if err != nil {
			t.Fatal(err)
		}
		first, err := owner.CreateDatabase(ctx, t.Name(), migrations)
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); owner.SpareClones() < 2 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		kept, err := owner.CreateDatabase(ctx, t.Name(), migrations)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := owner.CreateDatabase(ctx, t.Name(), migrations)
		if err != nil {
			t.Fatal(err)
		}
		if err := owner.KeepDatabase(ctx, kept.Name); err != nil {
			t.Fatal(err)
		}
		owner.DropDatabaseLater(first.Name)
		owner.Close()

		next, err := isolate.OpenWithSpares(ctx, pg.URL(), 1) // sweeps at Open
		if err != nil {
			t.Fatal(err)
		}
		if !exists(kept.Name) {
			t.Errorf("round %d: the kept clone %s was swept", i, kept.Name)
		}
		if strings.HasPrefix(plain.Name, owner.ClonePrefix()) && exists(plain.Name) {
			t.Errorf("round %d: the clone %s of a closed Server was left after the next Open", i, plain.Name)
		}
		_ = next.DropDatabase(ctx, kept.Name)
		_ = next.DropDatabase(ctx, plain.Name)
		next.Close()
		if t.Failed() {
			return
		}
	}
}

func randomSuffix() string { return fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff) }
