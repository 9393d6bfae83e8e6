package cleanroom

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestServiceDeclarationErrors(t *testing.T) {
	for _, tc := range []struct {
		services []Service
		want     string
	}{
		{[]Service{Postgres(), Postgres()}, `"postgres" declared twice`},
		{[]Service{Postgres(), Generic("other-pg", "postgres:15", WithPort(5432))}, "both use port 5432"},
		{[]Service{Generic("Bad_Name", "x")}, "service name"},
		{[]Service{Generic("noimage", " ")}, "no image"},
		{[]Service{Generic("p0", "x", WithPort(0))}, "port 0"},
	} {
		_, err := newEnvironment(Config{}.withDefaults(), newFakeEngine(), tc.services)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.services, err, tc.want)
		}
	}
}

func TestPostgresAndRedisDefinitions(t *testing.T) {
	e, _, _ := testEnv(t, Config{Images: map[string]string{"redis": "localhost/redis:7"}}, Postgres(WithPostgresSetting("max_connections", "50")), Redis())
	secret := randomHex(16)
	pg := e.byName["postgres"].svc.with(secret)
	want := []string{"postgres", "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=50", "-c", "synchronous_commit=off"}
	if diff := cmp.Diff(want, pg.command); diff != "" {
		t.Errorf("postgres command (-want +got):\n%s", diff)
	}
	if pg.env["POSTGRES_PASSWORD"] != secret {
		t.Errorf("postgres password %q, want the suite's random secret", pg.env["POSTGRES_PASSWORD"])
	}
	if pg.tmpfs["/var/lib/postgresql/data"] == "" || !strings.HasPrefix(pg.env["PGDATA"], "/var/lib/postgresql/data/") {
		t.Errorf("postgres data must be on tmpfs: %v %v", pg.tmpfs, pg.env)
	}
	rd := e.byName["redis"].svc.with(secret)
	if rd.image != "localhost/redis:7" || !strings.Contains(strings.Join(rd.command, " "), "--requirepass "+secret) {
		t.Errorf("redis: image %s command %v", rd.image, rd.command)
	}
	if e.byName["postgres"].svc.env["POSTGRES_PASSWORD"] != "" {
		t.Error("building a pod's definition changed the declared one")
	}

	c := &Container{host: "127.0.0.1", ports: map[uint16]uint16{5432: 40001, 6379: 40002}, env: pg.env, secret: secret}
	p := &PostgresServer{c: c}
	if got, want := p.URL(), "postgres://cleanroom:"+secret+"@127.0.0.1:40001/cleanroom?sslmode=disable"; got != want {
		t.Errorf("URL %s, want %s", got, want)
	}
	r := &RedisServer{c: c}
	if r.Addr() != "127.0.0.1:40002" || r.URL() != "redis://:"+secret+"@127.0.0.1:40002/0" {
		t.Errorf("redis Addr %s URL %s", r.Addr(), r.URL())
	}
}

func TestDefaultSuiteKeyFollowsServicesAndBindAddress(t *testing.T) {
	key := func(cfg Config, services ...Service) string {
		t.Helper()
		e, err := newEnvironment(cfg.withDefaults(), newFakeEngine(), services)
		if err != nil {
			t.Fatal(err)
		}
		return e.Suite()
	}
	base := key(Config{}, Postgres(), Redis())
	if again := key(Config{}, Postgres(), Redis()); again != base {
		t.Errorf("the same module and services give two suites: %s, %s", base, again)
	}
	if swapped := key(Config{}, Redis(), Postgres()); swapped != base {
		t.Errorf("the same services in another order give another suite: %s, %s", base, swapped)
	}
	for name, other := range map[string]string{
		"another service set":     key(Config{}, Postgres()),
		"another service setting": key(Config{}, Postgres(WithPostgresSetting("work_mem", "8MB")), Redis()),
		"another bind address":    key(Config{BindAddress: "0.0.0.0"}, Postgres(), Redis()),
	} {
		if other == base {
			t.Errorf("%s gives the same suite %s", name, base)
		}
	}
	if named := key(Config{Suite: "mine"}, Postgres(), Redis()); named != "mine" {
		t.Errorf("an explicit suite: %s", named)
	}
}

func TestMariaDBDefinition(t *testing.T) {
	e, _, _ := testEnv(t, Config{}, MariaDB(), Postgres())
	secret := randomHex(16)
	m := e.byName["mariadb"].svc.with(secret)
	if m.image != DefaultMariaDBImage || m.env["MARIADB_ROOT_PASSWORD"] != secret || m.env["MARIADB_DATABASE"] != "cleanroom" || m.env["MARIADB_INITDB_SKIP_TZINFO"] != "1" {
		t.Errorf("mariadb: image %s env %v", m.image, m.env)
	}
	if m.command[0] != "mariadbd" || !strings.Contains(strings.Join(m.command, " "), "--innodb-flush-log-at-trx-commit=0") {
		t.Errorf("mariadb command %v: want mariadbd with durability off", m.command)
	}
	if m.tmpfs["/var/lib/mysql"] == "" || !m.snapshot {
		t.Errorf("mariadb: data must be on tmpfs, with snapshots: tmpfs %v snapshot %v", m.tmpfs, m.snapshot)
	}
	// The password is the suite's, not part of what the container is.
	if strings.Contains(m.definition(), secret) {
		t.Errorf("the definition holds the secret: %s", m.definition())
	}
	if e.byName["mariadb"].svc.env["MARIADB_ROOT_PASSWORD"] != "" {
		t.Error("building a pod's definition changed the declared one")
	}
	c := &Container{host: "127.0.0.1", ports: map[uint16]uint16{3306: 40003}, env: m.env, secret: secret}
	if got, want := c.MariaDB().DSN(), "root:"+secret+"@tcp(127.0.0.1:40003)/cleanroom?parseTime=true"; got != want {
		t.Errorf("DSN %s, want %s", got, want)
	}
	if _, err := newEnvironment(Config{}.withDefaults(), newFakeEngine(), []Service{MariaDB(WithPostgresSetting("work_mem", "8MB"))}); err == nil || !strings.Contains(err.Error(), "applies to Postgres only") {
		t.Errorf("WithPostgresSetting on MariaDB: %v", err)
	}
}
