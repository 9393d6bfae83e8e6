package mariadb_test

import (
	"context"
	"database/sql"
	"os"
	"testing"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

// tenTables: ten tables, each with an AUTO_INCREMENT key, an index and a
// foreign key to the one before.
var tenTables = isolation.SQLDir(os.DirFS("testdata/ten"), ".")

// Run with: make bench (or go test -run '^$' -bench MariaDBIsolation -benchtime 100x ./integration/mariadb/)
//
// BenchmarkMariaDBIsolation measures what one test pays for its isolation
// on the suite's MariaDB (data on tmpfs, durability off), set-up plus
// tear-down: a transaction; a database copied from the template
// (NewMariaDBDatabase); and, for comparison, a database that runs the same
// migrations itself, which is what copying saves.
func BenchmarkMariaDBIsolation(b *testing.B) {
	ctx := context.Background()
	server := cleanroom.MariaDBFor(b)
	s, err := isolate.MariaDBFor(ctx, server.DSN())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("transaction", func(b *testing.B) {
		db, err := sql.Open("mysql", server.DSN())
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		for range b.N {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := tx.Rollback(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, set := range []struct {
		name string
		m    isolation.Migrator
	}{{"2-tables-seeded", migrations}, {"10-tables-index-fk", tenTables}} {
		b.Run("database-copy-"+set.name, func(b *testing.B) {
			if _, err := s.CreateDatabase(ctx, "warm", set.m); err != nil { // the template, outside the timing
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				name, err := s.CreateDatabase(ctx, "bench", set.m)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.DropDatabase(ctx, name); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("database-migrate-"+set.name, func(b *testing.B) {
			admin, err := sql.Open("mysql", server.DSN())
			if err != nil {
				b.Fatal(err)
			}
			defer admin.Close()
			for range b.N {
				name := isolate.ObjectName("t_", "bench")
				if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
					b.Fatal(err)
				}
				db, err := sql.Open("mysql", s.DSN(name))
				if err != nil {
					b.Fatal(err)
				}
				if err := set.m.Migrate(ctx, db); err != nil {
					b.Fatal(err)
				}
				db.Close()
				if err := s.DropDatabase(ctx, name); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
