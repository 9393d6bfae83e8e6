package isolation

import (
	"strings"
	"testing"
	"testing/fstest"
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
}
