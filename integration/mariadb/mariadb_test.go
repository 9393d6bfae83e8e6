// Package mariadb_test checks the MariaDB service's per-test isolation
// against the suite's real MariaDB, started by cleanroom.Main: parallel
// tests each get a database copied from a migrated template (tables,
// rows, keys, counters, generated columns, foreign keys) or a transaction
// rolled back, see only their own rows, and leave nothing behind.
package mariadb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

const parallel = 20

var (
	migrations = isolation.SQLDir(os.DirFS("testdata/migrations"), ".")
	view       = isolation.SQLDir(os.DirFS("testdata/withview"), ".")
	// withView is migrations and then a view over their tables.
	withView = isolation.MigrateFunc("migrations+view-1", func(ctx context.Context, db *sql.DB) error {
		if err := migrations.Migrate(ctx, db); err != nil {
			return err
		}
		return view.Migrate(ctx, db)
	})
)

func TestMain(m *testing.M) {
	cleanroom.Main(m, cleanroom.MariaDB())
}

// admin is a handle on the server as root, closed when t ends.
func admin(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", cleanroom.MariaDBFor(t).DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// databaseExists says whether the server has database name.
func databaseExists(t *testing.T, name string) bool {
	t.Helper()
	var n int
	if err := admin(t).QueryRow("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// checkOwnCopy writes what every parallel test fights over (the same
// unique e-mail) and checks the test sees the template's rows, its own,
// and nobody else's, with the template's keys and counters.
func checkOwnCopy(t *testing.T, db *sql.DB) {
	t.Helper()
	ctx := context.Background()
	res, err := db.ExecContext(ctx, "INSERT INTO customers (email) VALUES ('own@example.com')")
	if err != nil {
		t.Fatalf("insert the contested row: %v", err)
	}
	// The template's AUTO_INCREMENT counter came along: the seed row is 1.
	if id, _ := res.LastInsertId(); id != 2 {
		t.Errorf("new customer id %d, want 2 (after the template's seed row)", id)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO orders (customer_id, total) VALUES (2, 5)"); err != nil {
		t.Fatal(err)
	}
	var customers, orders int
	var domain string
	if err := db.QueryRowContext(ctx, "SELECT (SELECT COUNT(*) FROM customers), (SELECT COUNT(*) FROM orders), (SELECT domain FROM customers WHERE id = 2)").Scan(&customers, &orders, &domain); err != nil {
		t.Fatal(err)
	}
	if customers != 2 || orders != 2 || domain != "example.com" {
		t.Errorf("customers %d, orders %d, generated domain %q; want 2, 2, example.com (the seed and the test's own)", customers, orders, domain)
	}
	// The foreign key came along.
	_, err = db.ExecContext(ctx, "INSERT INTO orders (customer_id, total) VALUES (999, 1)")
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != 1452 {
		t.Errorf("an order of a customer that does not exist: %v; want error 1452 (foreign key)", err)
	}
}

func TestEachTestGetsADatabaseCopiedFromTheTemplate(t *testing.T) {
	var mu sync.Mutex
	var names []string
	t.Run("group", func(t *testing.T) {
		for i := range parallel {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				db := cleanroom.NewMariaDBDatabase(t, migrations)
				mu.Lock()
				names = append(names, db.Name)
				mu.Unlock()
				checkOwnCopy(t, db.DB())
			})
		}
	})
	if len(names) != parallel {
		t.Fatalf("%d databases made, want %d", len(names), parallel)
	}
	for _, n := range names {
		if databaseExists(t, n) {
			t.Errorf("database %s outlived its test", n)
		}
	}
}

// A template with a view cannot be copied table by table: each test's
// database runs the migrations instead, and is as complete.
func TestATemplateWithAViewIsMigratedForEachTest(t *testing.T) {
	for i := range 3 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			db := cleanroom.NewMariaDBDatabase(t, withView)
			checkOwnCopy(t, db.DB())
			var total string
			if err := db.DB().QueryRow("SELECT total FROM order_totals WHERE email = 'own@example.com'").Scan(&total); err != nil || total != "5.00" {
				t.Errorf("the view in the test's database: %q, %v; want 5.00", total, err)
			}
		})
	}
}

func TestMariaDBTxIsRolledBack(t *testing.T) {
	if _, err := admin(t).Exec("CREATE TABLE IF NOT EXISTS tx_notes (id INT AUTO_INCREMENT PRIMARY KEY, body TEXT)"); err != nil {
		t.Fatal(err)
	}
	t.Run("group", func(t *testing.T) {
		for i := range parallel {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				tx := cleanroom.MariaDBTx(t)
				if _, err := tx.Exec("INSERT INTO tx_notes (body) VALUES (?)", t.Name()); err != nil {
					t.Fatal(err)
				}
				var n int
				if err := tx.QueryRow("SELECT COUNT(*) FROM tx_notes").Scan(&n); err != nil || n != 1 {
					t.Errorf("rows seen in the transaction: %d, %v; want only its own", n, err)
				}
			})
		}
	})
	var n int
	if err := admin(t).QueryRow("SELECT COUNT(*) FROM tx_notes").Scan(&n); err != nil || n != 0 {
		t.Errorf("rows left after the transactions: %d, %v; want 0", n, err)
	}
}

// failingTB is a test that failed, so that its database is kept.
type failingTB struct {
	name     string
	logs     []string
	cleanups []func()
}

func (f *failingTB) Helper()                        {}
func (f *failingTB) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }
func (f *failingTB) Errorf(format string, a ...any) {
	f.logs = append(f.logs, fmt.Sprintf(format, a...))
}
func (f *failingTB) Logf(format string, a ...any) { f.logs = append(f.logs, fmt.Sprintf(format, a...)) }
func (f *failingTB) Cleanup(fn func())            { f.cleanups = append(f.cleanups, fn) }
func (f *failingTB) Name() string                 { return f.name }
func (f *failingTB) Failed() bool                 { return true }

func TestAFailedTestsDatabaseIsKept(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	f := &failingTB{name: "TestThatFailed"}
	d := isolation.NewMariaDBDatabase(f, cleanroom.MariaDBFor(t).DSN(), migrations)
	if _, err := d.DB().Exec("INSERT INTO customers (email) VALUES ('evidence@example.com')"); err != nil {
		t.Fatal(err)
	}
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	t.Cleanup(func() {
		if _, err := admin(t).Exec("DROP DATABASE IF EXISTS `" + d.Name + "`"); err != nil {
			t.Error(err)
		}
	})
	if !databaseExists(t, d.Name) {
		t.Fatalf("the failed test's database %s was dropped", d.Name)
	}
	log := strings.Join(f.logs, "\n")
	_, path, ok := strings.Cut(log, "--defaults-extra-file=")
	path, _, _ = strings.Cut(path, " ")
	if !ok || !strings.Contains(log, d.Name) {
		t.Fatalf("the log does not say how to open the kept database:\n%s", log)
	}
	if strings.Contains(log, cleanroom.MariaDBFor(t).Password()) {
		t.Errorf("the log holds the password:\n%s", log)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the client settings file %s: %v, %v; want mode 0600", path, st, err)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "database="+d.Name) || !strings.Contains(string(b), "password="+cleanroom.MariaDBFor(t).Password()) {
		t.Errorf("the client settings file does not open the kept database:\n%s", b)
	}
}
