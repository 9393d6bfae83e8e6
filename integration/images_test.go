package integration

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// pgTmpfs is how the tests (and the library) give Postgres its data on
// tmpfs: the mount point stays root-owned, PGDATA is a directory inside it.
var pgTmpfs = map[string]string{"/var/lib/postgresql/data": "rw,mode=1777,size=512m"}

const pgData = "/var/lib/postgresql/data/pgdata"

// waitReady waits up to a minute for p, failing the test with the
// container's last log lines when it does not come.
func waitReady(t *testing.T, c *podman.Client, container string, p healthcheck.Probe) {
	t.Helper()
	if c, ok := p.(io.Closer); ok {
		defer c.Close() // the Postgres probe keeps its connection
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := healthcheck.Wait(ctx, p, healthcheck.Options{}); err != nil {
		logs, _ := c.Logs(context.Background(), container, 30)
		t.Fatalf("%v\nlast log lines of %s:\n%s", err, container, strings.Join(logs, "\n"))
	}
}

func TestPostgresImageContract(t *testing.T) {
	t.Parallel()
	c := connect(t)
	ctx := context.Background()
	pod := newPod(t, c, podman.PodSpec{Ports: []podman.Port{{ContainerPort: 5432, HostIP: bindAddress}}})
	password := randomHex(12)
	// An init script written just before the entrypoint runs, as a user's
	// mounted /docker-entrypoint-initdb.d would hold it.
	id := startIn(t, c, pod, podman.ContainerSpec{
		Image: postgresImage,
		Env: map[string]string{
			"POSTGRES_USER": "app", "POSTGRES_PASSWORD": password, "POSTGRES_DB": "appdb", "PGDATA": pgData,
		},
		Entrypoint: []string{"sh", "-c", `echo "CREATE TABLE seeded (id int); INSERT INTO seeded VALUES (42);" > /docker-entrypoint-initdb.d/10-seed.sql && exec docker-entrypoint.sh "$@"`, "--"},
		Command:    []string{"postgres", "-c", "fsync=off"},
		Tmpfs:      pgTmpfs,
	})
	info, err := c.InspectPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := info.HostPort(5432)
	url := fmt.Sprintf("postgres://app:%s@%s:%d/appdb?sslmode=disable", password, addr.IP, addr.Port)
	waitReady(t, c, id, healthcheck.Postgres(url))

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var user, db, fsync, listen string
	var seeded int
	err = conn.QueryRow(ctx, `SELECT current_user, current_database(), current_setting('fsync'),
		current_setting('listen_addresses'), (SELECT id FROM seeded)`).Scan(&user, &db, &fsync, &listen, &seeded)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	if user != "app" || db != "appdb" || fsync != "off" || listen != "*" || seeded != 42 {
		t.Errorf("user=%s db=%s fsync=%s listen_addresses=%s seeded=%d; want app appdb off * 42", user, db, fsync, listen, seeded)
	}

	bad := strings.Replace(url, password, "wrong", 1)
	if err := healthcheck.Postgres(bad).Check(ctx); err == nil || !strings.Contains(err.Error(), "password authentication failed") {
		t.Errorf("a wrong password must be refused over the network: %v", err)
	}

	// The other readiness probes against the same real server: exec and
	// the log line, which the init server and the real one each print once.
	if err := healthcheck.Exec(execIn(c, id), "pg_isready", "-q").Check(ctx); err != nil {
		t.Errorf("exec probe: %v", err)
	}
	if err := healthcheck.LogLine(logsOf(c, id), "ready to accept connections", 2).Check(ctx); err != nil {
		t.Errorf("log line probe: %v", err)
	}
	if err := healthcheck.LogLine(logsOf(c, id), "ready to accept connections", 3).Check(ctx); err == nil {
		t.Errorf("log line probe: a third occurrence was seen")
	}

	// Started as root, as the official image is; the server runs as
	// postgres (uid 999) and owns its data.
	res, err := c.Exec(ctx, id, []string{"sh", "-c", `pg_isready -q && id -u && stat -c %u /proc/1 "$PGDATA"`})
	if err != nil || res.ExitCode != 0 {
		t.Errorf("pg_isready, id, stat: %+v %s, %v", res, res.Stderr, err)
	}
	if diff := cmp.Diff([]string{"0", "999", "999"}, strings.Fields(string(res.Stdout))); diff != "" {
		t.Errorf("uid of exec, server, PGDATA (-want +got):\n%s", diff)
	}
}

func TestPostgresImageTrustAndMissingPassword(t *testing.T) {
	t.Parallel()
	c := connect(t)
	ctx := context.Background()
	pod := newPod(t, c, podman.PodSpec{Ports: []podman.Port{{ContainerPort: 5432, HostIP: bindAddress}}})
	id := startIn(t, c, pod, podman.ContainerSpec{
		Image: postgresImage, Tmpfs: pgTmpfs,
		Env: map[string]string{"POSTGRES_HOST_AUTH_METHOD": "trust", "PGDATA": pgData},
	})
	info, err := c.InspectPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := info.HostPort(5432)
	waitReady(t, c, id, healthcheck.Postgres(fmt.Sprintf("postgres://postgres@%s:%d/postgres?sslmode=disable", addr.IP, addr.Port)))

	// Without a password and without trust the entrypoint refuses, clearly.
	id2 := startIn(t, c, pod, podman.ContainerSpec{Image: postgresImage, Tmpfs: pgTmpfs, Env: map[string]string{"PGDATA": pgData}})
	var logs []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ci, err := c.InspectContainer(ctx, id2)
		if err != nil {
			t.Fatal(err)
		}
		if !ci.State.Running && ci.State.Status == "exited" {
			if ci.State.ExitCode == 0 {
				t.Errorf("exit code 0 without a password")
			}
			logs, _ = c.Logs(ctx, id2, 10)
			break
		}
	}
	if !strings.Contains(strings.Join(logs, "\n"), "POSTGRES_PASSWORD is not set") {
		t.Errorf("logs of a start without password do not explain it:\n%s", strings.Join(logs, "\n"))
	}
}

func TestRedisImageContract(t *testing.T) {
	t.Parallel()
	c := connect(t)
	ctx := context.Background()
	pod := newPod(t, c, podman.PodSpec{Ports: []podman.Port{{ContainerPort: 6379, HostIP: bindAddress}}})
	id := startIn(t, c, pod, podman.ContainerSpec{Image: redisImage, Command: []string{"--save", ""}})
	info, err := c.InspectPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := info.HostPort(6379)
	hostport := fmt.Sprintf("%s:%d", addr.IP, addr.Port)
	waitReady(t, c, id, healthcheck.Redis(hostport, ""))

	rdb := redis.NewClient(&redis.Options{Addr: hostport})
	defer rdb.Close()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET through the pod's port: %v", err)
	}
	cfg, err := rdb.ConfigGet(ctx, "protected-mode").Result()
	if err != nil || cfg["protected-mode"] != "no" {
		t.Errorf("protected-mode: %v, %v; want no", cfg, err)
	}
	cfg, err = rdb.ConfigGet(ctx, "save").Result()
	if err != nil || cfg["save"] != "" {
		t.Errorf("the command's flags must reach redis-server: save=%v, %v", cfg, err)
	}
	res, err := c.Exec(ctx, id, []string{"redis-cli", "GET", "k"})
	if err != nil || res.ExitCode != 0 || strings.TrimSpace(string(res.Stdout)) != "v" {
		t.Errorf("redis-cli GET k: %+v %s, %v", res, res.Stderr, err)
	}
	// Started as root, as the official image is; the server runs as redis
	// (uid 999) in /data.
	res, err = c.Exec(ctx, id, []string{"stat", "-c", "%u", "/proc/1", "/data"})
	if err != nil || res.ExitCode != 0 {
		t.Errorf("stat: %+v %s, %v", res, res.Stderr, err)
	}
	if diff := cmp.Diff([]string{"999", "999"}, strings.Fields(string(res.Stdout))); diff != "" {
		t.Errorf("uid of the server and of /data (-want +got):\n%s", diff)
	}
}

// execIn and logsOf adapt the client to the healthcheck probes.
func execIn(c *podman.Client, id string) healthcheck.ExecFunc {
	return func(ctx context.Context, cmd []string) (int, string, error) {
		res, err := c.Exec(ctx, id, cmd)
		return res.ExitCode, string(res.Stdout) + string(res.Stderr), err
	}
}

func logsOf(c *podman.Client, id string) healthcheck.LogsFunc {
	return func(ctx context.Context) ([]string, error) { return c.Logs(ctx, id, 0) }
}
