package isolation_test

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

// plainMigrations: ten tables of a primary key and a text column.
var plainMigrations = isolation.SQLDir(os.DirFS("testdata/plain"), ".")

// Run with: make bench (or go test -run '^$' -bench Isolation -benchtime 200x ./integration/isolation/)
//
// BenchmarkIsolation measures what one test pays for its isolation, set-up
// plus tear-down, against the suite's Postgres (data on tmpfs, durability
// off) with ten-table migration sets: testdata/plain (a primary key and a
// text column each) and testdata/migrations (serial keys, an index and a
// foreign key each, plus the items table).
func BenchmarkIsolation(b *testing.B) {
	pg := cleanroom.PostgresFor(b)
	ctx := context.Background()
	s, err := isolate.Open(ctx, pg.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()

	b.Run("transaction", func(b *testing.B) {
		pool, err := pgxpool.New(ctx, pg.URL())
		if err != nil {
			b.Fatal(err)
		}
		defer pool.Close()
		for range b.N {
			tx, err := pool.Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := tx.Rollback(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})

	for _, set := range []struct {
		name string
		m    isolation.Migrator
	}{{"schema-10-plain-tables", plainMigrations}, {"schema-10-tables-serial-index-fk", migrations}} {
		b.Run(set.name, func(b *testing.B) {
			for range b.N {
				sc, err := s.CreateSchema(ctx, "bench", set.m)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.DropSchema(ctx, sc.Name); err != nil {
					b.Fatal(err)
				}
			}
		})
	}

	b.Run("template-database-10-tables", func(b *testing.B) {
		// The clone itself: a Server without spares.
		s, err := isolate.OpenWithSpares(ctx, pg.URL(), 0)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		// The template is built once, before the clock runs.
		db, err := s.CreateDatabase(ctx, "bench", migrations)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.DropDatabase(ctx, db.Name); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			db, err := s.CreateDatabase(ctx, "bench", migrations)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.DropDatabase(ctx, db.Name); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("warm-pool-take", func(b *testing.B) {
		// What a test waits for when the pool has a clone ready: the clock
		// runs for the take alone; refilling and dropping happen between.
		// The first take builds (or finds) the template and starts the filler.
		first, err := s.CreateDatabase(ctx, "bench", migrations)
		if err != nil {
			b.Fatal(err)
		}
		s.DropDatabaseLater(first.Name)
		b.ResetTimer()
		var took []time.Duration
		for range b.N {
			b.StopTimer()
			for deadline := time.Now().Add(time.Minute); s.SpareClones() < isolate.DefaultSpares; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatalf("the pool holds %d clones after a minute", s.SpareClones())
				}
			}
			start := time.Now()
			b.StartTimer()
			db, err := s.CreateDatabase(ctx, "bench", migrations)
			b.StopTimer()
			took = append(took, time.Since(start))
			if err != nil {
				b.Fatal(err)
			}
			s.DropDatabaseLater(db.Name)
		}
		slices.Sort(took)
		b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms-median")
	})

	b.Run("truncate-11-tables", func(b *testing.B) {
		db, err := s.CreateDatabase(ctx, "bench", migrations)
		if err != nil {
			b.Fatal(err)
		}
		defer s.DropDatabase(ctx, db.Name)
		conn, err := pgx.Connect(ctx, db.URL)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close(ctx)
		b.ResetTimer()
		for range b.N {
			if _, err := isolation.Truncate(ctx, conn); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("redis-database-lease", func(b *testing.B) {
		rd := cleanroom.RedisFor(b)
		for range b.N {
			l, err := isolate.LeaseDB(ctx, rd.Options(), "bench")
			if err != nil {
				b.Fatal(err)
			}
			if err := l.Release(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
