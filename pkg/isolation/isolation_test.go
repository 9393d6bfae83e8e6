package isolation

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/redis/go-redis/v9"
)

func TestSQLDirHashCoversNamesAndContent(t *testing.T) {
	base := fstest.MapFS{
		"m/0001_users.sql":  {Data: []byte("CREATE TABLE users (id int);")},
		"m/0002_orders.sql": {Data: []byte("CREATE TABLE orders (id int);")},
		"m/README.md":       {Data: []byte("not a migration")},
	}
	hash := func(fsys fstest.MapFS) string {
		t.Helper()
		h, err := SQLDir(fsys, "m").Hash()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	h0 := hash(base)
	if h0 != hash(base) {
		t.Fatal("the hash is not stable")
	}
	changed := fstest.MapFS{}
	for k, v := range base {
		changed[k] = v
	}
	changed["m/0002_orders.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE orders (id bigint);")}
	if hash(changed) == h0 {
		t.Error("a changed file does not change the hash")
	}
	changed = fstest.MapFS{"m/0001_users.sql": base["m/0001_users.sql"], "m/0003_orders.sql": base["m/0002_orders.sql"]}
	if hash(changed) == h0 {
		t.Error("a renamed file does not change the hash")
	}
	changed = fstest.MapFS{"m/0001_users.sql": base["m/0001_users.sql"], "m/0002_orders.sql": base["m/0002_orders.sql"], "m/README.md": {Data: []byte("edited")}}
	if hash(changed) != h0 {
		t.Error("a non-.sql file changes the hash")
	}
	if _, err := SQLDir(fstest.MapFS{"m/x.txt": {}}, "m").Hash(); err == nil || !strings.Contains(err.Error(), "no .sql files") {
		t.Errorf("empty directory: %v", err)
	}
	if _, err := SQLDir(base, "missing").Hash(); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing directory: %v", err)
	}
}

func TestMigrateFuncNeedsAVersion(t *testing.T) {
	if _, err := MigrateFunc("", nil).Hash(); err == nil {
		t.Error("an empty version must be refused")
	}
	a, _ := MigrateFunc("v1", nil).Hash()
	b, _ := MigrateFunc("v2", nil).Hash()
	if a == b || len(a) != 64 {
		t.Errorf("hashes %q %q", a, b)
	}
	if _, err := templateName(MigrateFunc("", nil)); err == nil {
		t.Error("templateName accepted an empty version")
	}
}

func TestObjectNames(t *testing.T) {
	a := objectName("t_", "TestSignup/parallel_case#07 with SPACES and a very long name that goes on and on")
	b := objectName("t_", "TestSignup/parallel_case#07 with SPACES and a very long name that goes on and on")
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
	if r := redact("postgres://u:secret@h/db"); strings.Contains(r, "secret") {
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
