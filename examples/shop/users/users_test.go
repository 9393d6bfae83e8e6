package users_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cleanroom-go/cleanroom/examples/shop/users"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
)

func TestMain(m *testing.M) {
	cleanroom.Main(m, cleanroom.Postgres(), cleanroom.Redis())
}

var migrate sync.Once

// store connects to the suite's Postgres. The tests share one database and
// keep out of each other's way with unique e-mail addresses.
func store(t *testing.T) *users.Store {
	t.Helper()
	pg := cleanroom.PostgresFor(t)
	db, err := pgxpool.New(context.Background(), pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	var merr error
	migrate.Do(func() { merr = users.Migrate(context.Background(), db) })
	if merr != nil {
		t.Fatal(merr)
	}
	return users.New(db)
}

func TestSignupAndFind(t *testing.T) {
	t.Parallel()
	s := store(t)
	ctx := context.Background()
	u, err := s.Signup(ctx, " Ada@Example.com ", "Ada")
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ByEmail(ctx, "ada@example.com")
	if err != nil || got != u {
		t.Errorf("ByEmail: %+v, %v; want %+v", got, err, u)
	}
}

func TestSignupTwiceIsRefused(t *testing.T) {
	t.Parallel()
	s := store(t)
	ctx := context.Background()
	if _, err := s.Signup(ctx, "grace@example.com", "Grace"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Signup(ctx, "GRACE@example.com", "Grace H."); !errors.Is(err, users.ErrEmailTaken) {
		t.Errorf("second signup: %v, want ErrEmailTaken", err)
	}
}

func TestUnknownUser(t *testing.T) {
	t.Parallel()
	if _, err := store(t).ByEmail(context.Background(), "nobody@example.com"); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("ByEmail: %v, want ErrNotFound", err)
	}
}

func TestManySignups(t *testing.T) {
	for i := range 20 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			email := fmt.Sprintf("user%d@example.com", i)
			if _, err := store(t).Signup(context.Background(), email, "U"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
