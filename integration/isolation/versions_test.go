package isolation_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
)

// The server's version is read, and the suite's image is the one this run
// asked for (make test runs this package on PostgreSQL 13, 15 and 17).
func TestServerVersionIsRead(t *testing.T) {
	pg := cleanroom.PostgresFor(t)
	s, err := isolate.OpenWithSpares(context.Background(), pg.URL(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var version string
	if err := adminPool(t, pg).QueryRow(context.Background(), "SHOW server_version").Scan(&version); err != nil {
		t.Fatal(err)
	}
	major := s.Version() / 10000
	if !strings.HasPrefix(version, fmt.Sprintf("%d.", major)) {
		t.Errorf("server_version_num read as %d; the server says %s", s.Version(), version)
	}
	t.Logf("PostgreSQL %s (server_version_num %d)", version, s.Version())
}

// The statements for servers older than this one work on it too: the pre-15
// clone without a STRATEGY clause, and the pre-13 drop that ends the other
// sessions first. Run against whatever server the suite has, they show the
// SQL of each branch on a real server, a leaked connection included.
func TestOlderServersStatementsWork(t *testing.T) {
	pg := cleanroom.PostgresFor(t)
	for _, v := range []int{120000, 140000} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			s, err := isolate.OpenWithSpares(context.Background(), pg.URL(), 0)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			s.PretendVersion(v)
			db, err := s.CreateDatabase(context.Background(), t.Name(), migrations)
			if err != nil {
				t.Fatalf("clone as for version %d: %v", v, err)
			}
			// A connection the test leaks: the drop goes through anyway.
			leaked, err := pgxpool.New(context.Background(), db.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer leaked.Close()
			checkOwn(t, leaked)
			if err := s.DropDatabase(context.Background(), db.Name); err != nil {
				t.Fatalf("drop as for version %d, with a connection open: %v", v, err)
			}
			if n := count(t, pg, "SELECT count(*) FROM pg_database WHERE datname = $1", db.Name); n != 0 {
				t.Errorf("database %s survives its drop", db.Name)
			}
		})
	}
}
