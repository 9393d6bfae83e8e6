package isolate

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestObjectNames(t *testing.T) {
	a := ObjectName("t_", "TestSignup/parallel_case#07 with SPACES and a very long name that goes on and on")
	b := ObjectName("t_", "TestSignup/parallel_case#07 with SPACES and a very long name that goes on and on")
	if a == b {
		t.Error("two names for one test are equal")
	}
	if len(a) > 63 || !strings.HasPrefix(a, "t_testsignup_parallel_case_07_with_spaces") || strings.Trim(a, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
		t.Errorf("name %q: want ≤ 63 lower-case identifier characters naming the test", a)
	}
}

func TestURLRewriting(t *testing.T) {
	u, err := withDatabase("postgres://u:p%40ss@127.0.0.1:5432/app?sslmode=disable", "t_x_1")
	if err != nil || u != "postgres://u:p%40ss@127.0.0.1:5432/t_x_1?sslmode=disable" {
		t.Errorf("withDatabase: %s, %v", u, err)
	}
	if _, err := withDatabase("mysql://x", "y"); err == nil || strings.Contains(err.Error(), "mysql://x") == false {
		t.Errorf("not a postgres URL: %v", err)
	}
	u, err = withSearchPath("postgres://u:p@h:1/app?sslmode=disable", "t_s")
	if err != nil || !strings.Contains(u, "search_path=t_s") || !strings.Contains(u, "sslmode=disable") {
		t.Errorf("withSearchPath: %s, %v", u, err)
	}
	if r := Redact("postgres://u:secret@h/db"); strings.Contains(r, "secret") {
		t.Errorf("redact kept the password: %s", r)
	}
}

func TestDeletePrefixRefusesGlobs(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	if _, err := DeletePrefix(context.Background(), c, "t:*"); err == nil || !strings.Contains(err.Error(), "glob") {
		t.Errorf("glob prefix: %v", err)
	}
}

type noVersion struct{}

func (noVersion) Hash() (string, error)                  { return "", nil }
func (noVersion) Migrate(context.Context, *sql.DB) error { return nil }

func TestTemplateNameRefusesAnEmptyHash(t *testing.T) {
	if _, err := templateName(noVersion{}); err == nil {
		t.Error("templateName accepted an empty hash")
	}
}
