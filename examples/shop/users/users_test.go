package users_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"

	"github.com/cleanroom-go/cleanroom/examples/shop/users"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

func TestMain(m *testing.M) {
	cleanroom.Main(m, cleanroom.Postgres(), cleanroom.Redis())
}

// migrations build the schema once per run, into a template database.
var migrations = isolation.MigrateFunc("users-1", func(ctx context.Context, db *sql.DB) error {
	_, err := db.ExecContext(ctx, users.Schema)
	return err
})

// store gives each test a database of its own, cloned from the template:
// the tests may use the same e-mail addresses without meeting each other.
func store(t *testing.T) *users.Store {
	t.Helper()
	return users.New(cleanroom.NewDatabase(t, migrations).Pool())
}

func TestSignupAndFind(t *testing.T) {
	t.Parallel()
	s := store(t)
	ctx := t.Context()
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
	ctx := t.Context()
	if _, err := s.Signup(ctx, "grace@example.com", "Grace"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Signup(ctx, "GRACE@example.com", "Grace H."); !errors.Is(err, users.ErrEmailTaken) {
		t.Errorf("second signup: %v, want ErrEmailTaken", err)
	}
}

func TestUnknownUser(t *testing.T) {
	t.Parallel()
	if _, err := store(t).ByEmail(t.Context(), "nobody@example.com"); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("ByEmail: %v, want ErrNotFound", err)
	}
}

func TestManySignups(t *testing.T) {
	for i := range 20 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			// The same address in every test: each has its own database.
			s := store(t)
			u, err := s.Signup(t.Context(), "same@example.com", fmt.Sprint("user ", i))
			if err != nil {
				t.Fatal(err)
			}
			if u.ID != 1 {
				t.Errorf("first user of a fresh database has id %d", u.ID)
			}
		})
	}
}
