package integration

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// testLog collects an Environment's log for assertions and shows it with -v.
type testLog struct {
	t  *testing.T
	mu sync.Mutex
	b  strings.Builder
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	return len(p), nil
}

func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newEnv makes an Environment on the real engine with the local images; it
// is closed, and checked to have left nothing, when the test ends.
func newEnv(t *testing.T, cfg cleanroom.Config, services ...cleanroom.Service) (*cleanroom.Environment, *testLog) {
	t.Helper()
	log := &testLog{t: t}
	cfg.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.Images == nil {
		cfg.Images = map[string]string{"postgres": postgresImage, "redis": redisImage, "mariadb": mariadbImage}
	}
	if cfg.Suite == "" {
		cfg.Suite = "it-" + randomHex(4) // tests of this package must not share pods
	}
	if cfg.BindAddress == "" {
		cfg.BindAddress = bindAddress // New reads no environment variable
	}
	if cfg.GracePeriod == 0 {
		cfg.GracePeriod = time.Millisecond // the reaper removes the pod right after Close
	}
	env, err := cleanroom.New(context.Background(), cfg, services...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			t.Logf("environment log:\n%s", log.String())
		}
		assertNothingLeft(t, env.Suite())
	})
	return env, log
}

// assertNothingLeft checks that no pod or container of the suite remains
// once its reaper had time to act (grace period plus a few polls).
func assertNothingLeft(t *testing.T, suite string) {
	t.Helper()
	c := connect(t)
	labels := map[string]string{labels.Suite: suite}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		pods, err := c.ListPods(context.Background(), labels)
		cts, err2 := c.ListContainers(context.Background(), labels)
		if err == nil && err2 == nil && len(pods) == 0 && len(cts) == 0 {
			return
		}
	}
	if left := leftovers(c, labels); left != "" {
		t.Errorf("suite %s left objects behind:\n%s", suite, left)
	}
}

// suiteContainers lists the service containers of a suite on the engine.
func suiteContainers(t *testing.T, suite string) []podman.ContainerSummary {
	t.Helper()
	cts, err := connect(t).ListContainers(context.Background(), map[string]string{labels.Suite: suite})
	if err != nil {
		t.Fatal(err)
	}
	var out []podman.ContainerSummary
	for _, ct := range cts {
		if !ct.IsInfra && ct.Labels[labels.Role] != "snapshot-builder" {
			out = append(out, ct)
		}
	}
	return out
}

func TestConcurrentGetOrCreateStartsOneContainer(t *testing.T) {
	t.Parallel()
	env, _ := newEnv(t, cleanroom.Config{}, cleanroom.Redis())
	var wg sync.WaitGroup
	ids := make([]string, 100)
	errs := make([]error, 100)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := env.GetOrCreate(context.Background(), "redis", nil)
			if err == nil {
				ids[i] = c.ID
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("caller %d: %s, %v; caller 0: %s", i, ids[i], errs[i], ids[0])
		}
	}
	if cts := suiteContainers(t, env.Suite()); len(cts) != 1 {
		t.Errorf("%d containers on the engine, want 1: %+v", len(cts), cts)
	}
	if st := env.Stats(); st.Started != 1 {
		t.Errorf("stats %+v, want 1 started", st)
	}
}

func TestKilledContainerIsReplacedOnNextUse(t *testing.T) {
	t.Parallel()
	env, log := newEnv(t, cleanroom.Config{ContainerHealthCheckInterval: time.Nanosecond}, cleanroom.Redis())
	ctx := context.Background()
	first, err := env.Get(ctx, "redis")
	if err != nil {
		t.Fatal(err)
	}
	// From outside, as `podman kill` would.
	if err := connect(t).StopContainer(ctx, first.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	second, err := env.Get(ctx, "redis")
	if err != nil {
		t.Fatalf("get after kill: %v", err)
	}
	if second.ID == first.ID {
		t.Fatal("the killed container was handed out again")
	}
	rdb := redis.NewClient(&redis.Options{Addr: second.Redis().Addr(), Password: second.Redis().Password()})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Errorf("the replacement does not answer: %v", err)
	}
	if !strings.Contains(log.String(), "replacing container") || !strings.Contains(log.String(), "unhealthy") {
		t.Errorf("the replacement was not logged:\n%s", log.String())
	}
	if cts := suiteContainers(t, env.Suite()); len(cts) != 1 || cts[0].ID != second.ID {
		t.Errorf("containers on the engine: %+v, want only the replacement", cts)
	}
}

// The suite pod removed from outside (podman pod rm -f): the next use makes
// a new pod and container. Podman 4.3 answers the create in the removed pod
// with a 500 whose cause is "no such pod".
func TestRemovedPodIsReplacedOnNextUse(t *testing.T) {
	t.Parallel()
	env, _ := newEnv(t, cleanroom.Config{ContainerHealthCheckInterval: time.Nanosecond}, cleanroom.Redis())
	ctx := context.Background()
	first, err := env.Get(ctx, "redis")
	if err != nil {
		t.Fatal(err)
	}
	if err := connect(t).RemovePod(ctx, first.PodID); err != nil {
		t.Fatal(err)
	}
	second, err := env.Get(ctx, "redis")
	if err != nil {
		t.Fatalf("get after the pod was removed: %v", err)
	}
	if second.PodID == first.PodID || second.ID == first.ID {
		t.Errorf("still the removed pod %s / container %s", first.PodID, first.ID)
	}
	rdb := redis.NewClient(&redis.Options{Addr: second.Redis().Addr(), Password: second.Redis().Password()})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Errorf("the replacement does not answer: %v", err)
	}
}

func TestTinyMaxReuseTimeReplacesAtAttach(t *testing.T) {
	t.Parallel()
	env, log := newEnv(t, cleanroom.Config{MaxContainerReuseTime: time.Second}, cleanroom.Redis())
	ctx := context.Background()
	first, err := env.Get(ctx, "redis")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	second, err := env.Get(ctx, "redis")
	if err != nil {
		t.Fatal(err)
	}
	if second.ID == first.ID {
		t.Fatal("a container older than max_container_reuse_time was reused")
	}
	if !strings.Contains(log.String(), "max_container_reuse_time") {
		t.Errorf("the reason was not logged:\n%s", log.String())
	}
}

func TestReadinessTimeoutCarriesTheLogTail(t *testing.T) {
	t.Parallel()
	// 10 s: the engine may take seconds to create and start the container on
	// a loaded machine, and all of that counts against the timeout.
	// A protocol probe (HTTP): rootless Podman's port forwarder accepts a
	// TCP connection to a port nothing listens on, so a bare TCP connect
	// is only a heuristic there (see healthcheck.TCPSettle).
	svc := cleanroom.Generic("stuck", busyboxImage, cleanroom.WithPort(7000),
		cleanroom.WithCmd("sh", "-c", `for i in $(seq 1 80); do echo "boot step $i"; done; echo "FATAL: config missing"; exec sleep 600`),
		cleanroom.WithReady(func(c *cleanroom.Container) healthcheck.Probe {
			return healthcheck.HTTP("http://"+c.Addr(7000)+"/ready", 200)
		}))
	env, _ := newEnv(t, cleanroom.Config{ContainerStartupTimeout: 10 * time.Second}, svc)
	_, err := env.Get(context.Background(), "stuck")
	if err == nil {
		t.Fatal("a service that never listens became ready")
	}
	msg := err.Error()
	for _, want := range []string{"start stuck: wait ready (10s)", "http GET http://" + bindAddress + ":", "last 50 log lines", "boot step 80", "FATAL: config missing"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "boot step 30\n") {
		t.Errorf("more than 50 lines in the error:\n%s", msg)
	}
	if cts := suiteContainers(t, env.Suite()); len(cts) != 0 {
		t.Errorf("the failed container was left: %+v", cts)
	}
}

func TestResetEmptiesTablesAndKeys(t *testing.T) {
	t.Parallel()
	env, _ := newEnv(t, cleanroom.Config{}, cleanroom.Postgres(), cleanroom.Redis())
	ctx := context.Background()
	pg := postgresOf(t, env)
	rd := redisOf(t, env)
	if pg.Container().PodID != rd.Container().PodID {
		t.Errorf("postgres and redis are in different pods: %s, %s", pg.Container().PodName, rd.Container().PodName)
	}

	conn, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		"CREATE SCHEMA billing",
		"CREATE TABLE accounts (id serial PRIMARY KEY, name text)",
		"CREATE TABLE billing.invoices (id serial PRIMARY KEY, account int REFERENCES accounts(id))",
		"INSERT INTO accounts (name) VALUES ('a'), ('b')",
		"INSERT INTO billing.invoices (account) VALUES (1), (2)",
		"ALTER DATABASE cleanroom SET search_path = billing, public",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: rd.Addr(), Password: rd.Password()})
	defer rdb.Close()
	for db := 0; db < 3; db++ {
		c := redis.NewClient(&redis.Options{Addr: rd.Addr(), Password: rd.Password(), DB: db})
		if err := c.Set(ctx, "key", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}

	for _, svc := range []string{"postgres", "redis"} {
		if err := env.Reset(ctx, svc); err != nil {
			t.Fatalf("Reset %s: %v", svc, err)
		}
	}

	var accounts, invoices int
	if err := conn.QueryRow(ctx, "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM billing.invoices)").Scan(&accounts, &invoices); err != nil {
		t.Fatal(err)
	}
	var nextID int
	if err := conn.QueryRow(ctx, "INSERT INTO accounts (name) VALUES ('c') RETURNING id").Scan(&nextID); err != nil {
		t.Fatal(err)
	}
	if accounts != 0 || invoices != 0 || nextID != 1 {
		t.Errorf("after Reset: %d accounts, %d invoices, next id %d; want 0, 0, 1", accounts, invoices, nextID)
	}
	fresh, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close(ctx)
	var sp string
	if err := fresh.QueryRow(ctx, "SHOW search_path").Scan(&sp); err != nil || sp != `"$user", public` {
		t.Errorf("search_path of a new session after Reset: %q, %v", sp, err)
	}
	for db := 0; db < 3; db++ {
		c := redis.NewClient(&redis.Options{Addr: rd.Addr(), Password: rd.Password(), DB: db})
		n, err := c.DBSize(ctx).Result()
		c.Close()
		if err != nil || n != 0 {
			t.Errorf("redis db %d after Reset: %d keys, %v", db, n, err)
		}
	}
}

// A suite-wide Reset must not take a leased Redis database away from the
// test (maybe of another process) that holds it.
func TestResetKeepsLeasedRedisDatabases(t *testing.T) {
	t.Parallel()
	env, _ := newEnv(t, cleanroom.Config{}, cleanroom.Redis())
	ctx := context.Background()
	rd := redisOf(t, env)
	lease, err := isolate.LeaseDB(ctx, rd.Options(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lease.Release(ctx) }()
	if err := lease.Client.Set(ctx, "mine", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	free := redis.NewClient(&redis.Options{Addr: rd.Addr(), Password: rd.Password(), DB: lease.DB + 1})
	defer free.Close()
	if err := free.Set(ctx, "stray", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	if err := env.Reset(ctx, "redis"); err != nil {
		t.Fatal(err)
	}

	if n, err := lease.Client.Exists(ctx, "mine").Result(); err != nil || n != 1 {
		t.Errorf("the leased database %d lost its key in Reset: %d, %v", lease.DB, n, err)
	}
	if n, err := free.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Errorf("unleased database %d after Reset: %d keys, %v", lease.DB+1, n, err)
	}
	// The lease itself is still there: nobody else gets the database.
	other, err := isolate.LeaseDB(ctx, rd.Options(), "other")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Release(ctx) }()
	if other.DB == lease.DB {
		t.Errorf("after Reset, database %d was leased a second time", lease.DB)
	}
}

func TestPostgresDefaultsForTests(t *testing.T) {
	t.Parallel()
	env, _ := newEnv(t, cleanroom.Config{}, cleanroom.Postgres())
	pg := postgresOf(t, env)
	conn, err := pgx.Connect(context.Background(), pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	got := map[string]string{}
	for _, name := range []string{"fsync", "synchronous_commit", "full_page_writes", "max_connections", "data_directory"} {
		var v string
		if err := conn.QueryRow(context.Background(), "SELECT current_setting($1)", name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		got[name] = v
	}
	if got["fsync"] != "off" || got["synchronous_commit"] != "off" || got["full_page_writes"] != "off" || got["max_connections"] != "300" {
		t.Errorf("settings: %v", got)
	}
	res, err := connect(t).Exec(context.Background(), pg.Container().ID, []string{"sh", "-c", "grep ' /var/lib/postgresql/data ' /proc/mounts"})
	if err != nil || !strings.Contains(string(res.Stdout), "tmpfs") {
		t.Errorf("data directory %s is not on tmpfs: %q %v", got["data_directory"], res.Stdout, err)
	}
	// The password is the suite's, worked out again by every process of
	// this user: no label of the pod carries it.
	info, err := connect(t).InspectPod(context.Background(), pg.Container().PodID)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range info.Labels {
		if strings.Contains(v, pg.Password()) {
			t.Errorf("pod label %s carries the password", k)
		}
	}
	if pg.User() != "cleanroom" || pg.Database() != "cleanroom" || len(pg.Password()) < 16 || pg.Host() != bindAddress {
		t.Errorf("user %s db %s password %q host %s", pg.User(), pg.Database(), pg.Password(), pg.Host())
	}
}

// The backstop when every process of ours is gone: conmon ends each service
// container at its run-time limit, and the pod's infra container (which
// holds the published ports) stops with the last of them.
func TestInfraStopsWithTheLastServiceContainer(t *testing.T) {
	t.Parallel()
	// Run-time limit: 2 × max_container_reuse_time + the start-up timeout,
	// which must leave a loaded machine time to start the container.
	env, _ := newEnv(t, cleanroom.Config{MaxContainerReuseTime: time.Second, ContainerStartupTimeout: 15 * time.Second},
		cleanroom.Generic("sleeper", busyboxImage, cleanroom.WithCmd("sleep", "600")))
	ctx := context.Background()
	c, err := env.Get(ctx, "sleeper")
	if err != nil {
		t.Fatal(err)
	}
	pc := connect(t)
	var state string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		info, err := pc.InspectPod(ctx, c.PodID)
		if err != nil {
			t.Fatal(err)
		}
		state = info.State
		running := 0
		for _, ct := range info.Containers {
			if ct.State == "running" {
				running++
			}
		}
		if running == 0 {
			return
		}
	}
	t.Errorf("a minute after its service container's 17 s run-time limit, pod %s is %s with a container running", c.PodName, state)
}

// postgresOf and redisOf are the servers of env's services, started on
// first use.
func postgresOf(t *testing.T, env *cleanroom.Environment) *cleanroom.PostgresServer {
	t.Helper()
	c, err := env.Get(context.Background(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	return c.Postgres()
}

func redisOf(t *testing.T, env *cleanroom.Environment) *cleanroom.RedisServer {
	t.Helper()
	c, err := env.Get(context.Background(), "redis")
	if err != nil {
		t.Fatal(err)
	}
	return c.Redis()
}
