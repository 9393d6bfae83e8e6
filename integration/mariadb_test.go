package integration

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
)

// openMariaDB opens dsn, closed when t ends.
func openMariaDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// startMariaDB runs one environment of suite to a ready MariaDB, checks
// the server's test settings, and closes it (which waits for a snapshot
// being saved).
func startMariaDB(t *testing.T, suite string) cleanroom.Stats {
	t.Helper()
	cfg := cleanroom.Config{Suite: suite, GracePeriod: time.Millisecond, BindAddress: bindAddress,
		Images: map[string]string{"mariadb": mariadbImage}}
	env, err := cleanroom.New(context.Background(), cfg, cleanroom.MariaDB())
	if err != nil {
		t.Fatal(err)
	}
	c, err := env.Get(context.Background(), "mariadb")
	if err != nil {
		t.Fatal(err)
	}
	m := c.MariaDB()
	var version, db string
	var flush, skipNameResolve int
	err = openMariaDB(t, m.DSN()).QueryRow("SELECT VERSION(), DATABASE(), @@innodb_flush_log_at_trx_commit, @@skip_name_resolve").Scan(&version, &db, &flush, &skipNameResolve)
	if err != nil {
		t.Fatalf("query a MariaDB started from %s: %v", c.Image, err)
	}
	if !strings.Contains(version, "MariaDB") || db != "cleanroom" || flush != 0 || skipNameResolve != 1 {
		t.Errorf("version %q, database %q, innodb_flush_log_at_trx_commit %d, skip_name_resolve %d; want MariaDB, cleanroom, 0, 1", version, db, flush, skipNameResolve)
	}
	// The time-zone tables are left out by default (a faster first start).
	var zones int
	if err := openMariaDB(t, m.DSN()).QueryRow("SELECT COUNT(*) FROM mysql.time_zone_name").Scan(&zones); err != nil || zones != 0 {
		t.Errorf("time zones loaded: %d, %v; want none", zones, err)
	}
	st := env.Stats()
	if st.Snapshot == 1 {
		logs, err := connect(t).Logs(context.Background(), c.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if all := strings.Join(logs, "\n"); strings.Contains(all, "init process") || strings.Contains(all, "Installing") {
			t.Errorf("the start from snapshot %s initialised the data directory again:\n%s", c.Image, all)
		}
	}
	if err := env.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, suite)
	return st
}

// MariaDB starts tuned for tests, saves a snapshot of its initialised data
// directory, and the next cold start of the suite uses it.
func TestMariaDBStartsTunedAndThenFromItsSnapshot(t *testing.T) {
	t.Parallel()
	suite := "it-maria-" + randomHex(4)
	t.Cleanup(func() { removeSnapshots(t, suite) })
	if st := startMariaDB(t, suite); st.Started != 1 || st.Snapshot != 0 {
		t.Fatalf("first run: %+v; want a plain cold start", st)
	}
	if got := snapshots(t, suite); len(got) != 1 {
		t.Fatalf("snapshots after the first run: %v; want one", got)
	}
	if st := startMariaDB(t, suite); st.Snapshot != 1 {
		t.Errorf("second run: %+v; want a start from the snapshot", st)
	}
}

func TestMariaDBKilledContainerIsReplacedOnNextUse(t *testing.T) {
	t.Parallel()
	// No snapshot: each build initialises MariaDB once more, and this test
	// is about the replacement (TestMariaDBStartsTunedAndThenFromItsSnapshot
	// covers snapshots).
	env, log := newEnv(t, cleanroom.Config{ContainerHealthCheckInterval: time.Nanosecond, DisableSnapshots: true}, cleanroom.MariaDB())
	ctx := context.Background()
	first, err := env.Get(ctx, "mariadb")
	if err != nil {
		t.Fatal(err)
	}
	if err := connect(t).StopContainer(ctx, first.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	second, err := env.Get(ctx, "mariadb")
	if err != nil {
		t.Fatalf("get after kill: %v", err)
	}
	if second.ID == first.ID {
		t.Fatal("the killed container was handed out again")
	}
	if err := openMariaDB(t, second.MariaDB().DSN()).PingContext(ctx); err != nil {
		t.Errorf("the replacement does not answer: %v", err)
	}
	if !strings.Contains(log.String(), "replacing container") {
		t.Errorf("the replacement was not logged:\n%s", log.String())
	}
}

// Reset empties every table of the service's database, foreign keys and
// all, and restarts the counters; the tables stay.
func TestMariaDBResetEmptiesTables(t *testing.T) {
	t.Parallel()
	env, _ := newEnv(t, cleanroom.Config{DisableSnapshots: true}, cleanroom.MariaDB())
	ctx := context.Background()
	c, err := env.Get(ctx, "mariadb")
	if err != nil {
		t.Fatal(err)
	}
	db := openMariaDB(t, c.MariaDB().DSN())
	for _, q := range []string{
		"CREATE TABLE accounts (id INT AUTO_INCREMENT PRIMARY KEY, name TEXT)",
		"CREATE TABLE invoices (id INT AUTO_INCREMENT PRIMARY KEY, account INT, FOREIGN KEY (account) REFERENCES accounts (id))",
		"INSERT INTO accounts (name) VALUES ('a'), ('b')",
		"INSERT INTO invoices (account) VALUES (1), (2)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := env.Reset(ctx, "mariadb"); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	var accounts, invoices int
	if err := db.QueryRowContext(ctx, "SELECT (SELECT COUNT(*) FROM accounts), (SELECT COUNT(*) FROM invoices)").Scan(&accounts, &invoices); err != nil {
		t.Fatal(err)
	}
	res, err := db.ExecContext(ctx, "INSERT INTO accounts (name) VALUES ('c')")
	if err != nil {
		t.Fatal(err)
	}
	next, _ := res.LastInsertId()
	if accounts != 0 || invoices != 0 || next != 1 {
		t.Errorf("after Reset: %d accounts, %d invoices, next id %d; want 0, 0, 1", accounts, invoices, next)
	}
}
