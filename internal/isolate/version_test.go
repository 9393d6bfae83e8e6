package isolate

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestCloneSQLFollowsTheServerVersion(t *testing.T) {
	for _, c := range []struct {
		version  int
		strategy bool
	}{{120022, false}, {130016, false}, {140013, false}, {150004, true}, {170002, true}} {
		q := cloneSQL(c.version, "t_a", "tpl_b")
		if got := strings.Contains(q, "STRATEGY FILE_COPY"); got != c.strategy {
			t.Errorf("version %d: %s; want a STRATEGY clause: %v", c.version, q, c.strategy)
		}
		if !strings.HasPrefix(q, `CREATE DATABASE "t_a" TEMPLATE "tpl_b"`) {
			t.Errorf("version %d: %s", c.version, q)
		}
	}
}

// recorder is an execer that records statements and fails the first
// `busy` DROPs with object_in_use, as a server does while sessions remain.
type recorder struct {
	stmts []string
	busy  int
}

func (r *recorder) Exec(_ context.Context, sql string, _ ...any) (pgconn.CommandTag, error) {
	r.stmts = append(r.stmts, sql)
	if strings.HasPrefix(sql, "DROP") && r.busy > 0 {
		r.busy--
		return pgconn.CommandTag{}, &pgconn.PgError{Code: "55006", Message: `database "t_a" is being accessed by other users`}
	}
	return pgconn.CommandTag{}, nil
}

func TestDropDatabaseFollowsTheServerVersion(t *testing.T) {
	r := &recorder{}
	if err := dropDatabase(context.Background(), r, 130016, "t_a"); err != nil {
		t.Fatal(err)
	}
	if want := []string{`DROP DATABASE IF EXISTS "t_a" WITH (FORCE)`}; !slices.Equal(r.stmts, want) {
		t.Errorf("13: %q, want %q", r.stmts, want)
	}

	// Before 13: end the other sessions, drop; again while a new session
	// keeps the drop from going through.
	r = &recorder{busy: 2}
	if err := dropDatabase(context.Background(), r, 120022, "t_a"); err != nil {
		t.Fatal(err)
	}
	var drops, terminates int
	for _, s := range r.stmts {
		switch {
		case s == `DROP DATABASE IF EXISTS "t_a"`:
			drops++
		case strings.Contains(s, "pg_terminate_backend"):
			terminates++
		default:
			t.Errorf("12: unexpected statement %q", s)
		}
	}
	if drops != 3 || terminates != 3 {
		t.Errorf("12: %d drops and %d terminations, want 3 and 3: %q", drops, terminates, r.stmts)
	}

	// A drop that keeps failing gives up with the server's error.
	r = &recorder{busy: 1000}
	err := dropDatabase(context.Background(), r, 120022, "t_a")
	if err == nil || !strings.Contains(err.Error(), "being accessed by other users") {
		t.Errorf("12, always busy: %v", err)
	}
}

// The line a failed test logs for dropping its kept database by hand works
// on the server it ran on.
func TestDropHintFollowsTheServerVersion(t *testing.T) {
	if got, want := (&Server{version: 130016}).DropHint("t_a"), `DROP DATABASE "t_a" WITH (FORCE)`; got != want {
		t.Errorf("13: %s, want %s", got, want)
	}
	if got := (&Server{version: 120022}).DropHint("t_a"); strings.Contains(got, "FORCE") || !strings.HasPrefix(got, `DROP DATABASE "t_a"`) {
		t.Errorf("12: %s; want a DROP without FORCE", got)
	}
}
