// Package rabbitmq_test checks the RabbitMQ service against a real
// RabbitMQ server in a container: it starts and is ready by its own
// protocol, parallel tests each get a vhost of their own and see nothing
// of each other's, a test's vhost is gone when it ends (kept when it
// failed), Reset spares only the vhosts running tests hold, and a killed
// server is replaced at the next use.
//
//	CLEANROOM_RABBITMQ_IMAGE=localhost/cleanroom/rabbitmq:3 go test -race -count=1 ./integration/rabbitmq/
package rabbitmq_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/cleanroom-go/cleanroom/internal/itest"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

// rabbitmqImage is the image the tests run: built by
// scripts/build-images.sh where no registry is reachable.
var rabbitmqImage = itest.EnvOr("CLEANROOM_RABBITMQ_IMAGE", "localhost/cleanroom/rabbitmq:3")

func TestMain(m *testing.M) {
	cleanroom.Main(m, cleanroom.RabbitMQ(cleanroom.WithImage(rabbitmqImage)))
}

// dial opens a connection of the test's own to url, closed when t ends.
func dial(t testing.TB, url string) *amqp.Connection {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial rabbitmq: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func channel(t testing.TB, conn *amqp.Connection) *amqp.Channel {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("open channel: %v", err)
	}
	return ch
}

// management GETs path of the server's management API as its user and
// decodes the JSON answer into out.
func management(t testing.TB, r *cleanroom.RabbitMQServer, path string, out any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.ManagementURL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(r.User(), r.Password())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s %v", path, resp.StatusCode, b, err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// vhosts lists the server's vhosts through the management API, sorted.
func vhosts(t testing.TB, r *cleanroom.RabbitMQServer) []string {
	t.Helper()
	var vs []struct{ Name string }
	management(t, r, "/api/vhosts", &vs)
	var out []string
	for _, v := range vs {
		out = append(out, v.Name)
	}
	slices.Sort(out)
	return out
}

// The server answers AMQP and the management API as the service's user
// with the suite's password, which is neither empty nor "guest"; the probe
// fails for a wrong password, at once.
func TestRabbitMQIsReadyWithManagementAndAuth(t *testing.T) {
	t.Parallel()
	r := cleanroom.RabbitMQFor(t)
	if r.User() != "cleanroom" || len(r.Password()) < 16 || r.Password() == "guest" {
		t.Errorf("user %q password of %d characters; want cleanroom and a random one", r.User(), len(r.Password()))
	}
	if !strings.HasPrefix(r.URL(), "amqp://cleanroom:") || !strings.HasSuffix(r.URL(), "/") {
		t.Errorf("URL %s", healthcheckRedact(r.URL()))
	}
	ch := channel(t, dial(t, r.URL()))
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("declare a queue on the default vhost: %v", err)
	}
	if _, err := ch.QueueDelete(q.Name, false, false, false); err != nil {
		t.Error(err)
	}
	var whoami struct {
		Name string
		Tags any
	}
	management(t, r, "/api/whoami", &whoami)
	if whoami.Name != "cleanroom" || !strings.Contains(fmt.Sprint(whoami.Tags), "administrator") {
		t.Errorf("management API whoami: %+v; want cleanroom, an administrator", whoami)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := healthcheck.RabbitMQ(r.URL(), r.ManagementURL()).Check(ctx); err != nil {
		t.Errorf("probe: %v", err)
	}
	bad := "amqp://cleanroom:wrong@" + r.Addr() + "/"
	start := time.Now()
	err = healthcheck.Wait(ctx, healthcheck.RabbitMQ(bad, ""), healthcheck.Options{})
	if err == nil {
		t.Error("probe with a wrong password succeeded")
	} else if time.Since(start) > 5*time.Second {
		t.Errorf("probe with a wrong password took %s to fail: it should give up at once (%v)", time.Since(start), err)
	}
	if _, err := amqp.Dial("amqp://guest:guest@" + r.Addr() + "/"); err == nil {
		t.Error("guest logs in: the suite's server should have only its own user")
	}
}

func healthcheckRedact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable)"
	}
	return p.Redacted()
}

// Ten parallel tests declare a queue and an exchange of the same names in
// vhosts of their own, publish and consume: each sees exactly its own
// messages. When they have ended, their vhosts are gone (asked of the
// management API).
func TestParallelTestsOwnTheirVhosts(t *testing.T) {
	t.Parallel()
	r := cleanroom.RabbitMQFor(t)
	var mu sync.Mutex
	var made []string
	t.Run("group", func(t *testing.T) {
		for i := range 10 {
			t.Run(fmt.Sprintf("test%d", i), func(t *testing.T) {
				t.Parallel()
				v := cleanroom.RabbitMQVhost(t)
				mu.Lock()
				made = append(made, v.Name)
				mu.Unlock()
				useVhost(t, v, i)
			})
		}
	})
	if len(made) != 10 {
		t.Fatalf("%d vhosts made, want 10", len(made))
	}
	have := vhosts(t, r)
	for _, v := range made {
		if slices.Contains(have, v) {
			t.Errorf("vhost %s is still there after its test passed", v)
		}
	}
}

// useVhost declares "orders" (a queue bound to exchange "events"),
// publishes five messages that name test i and reads the queue: it must
// hold exactly those five.
func useVhost(t *testing.T, v *isolation.RabbitMQVhost, i int) {
	t.Helper()
	ch := channel(t, dial(t, v.URL))
	if err := ch.ExchangeDeclare("events", "fanout", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("orders", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("orders", "", "events", false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var want []string
	for n := range 5 {
		body := fmt.Sprintf("test%d message%d", i, n)
		want = append(want, body)
		conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "events", "", false, false, amqp.Publishing{Body: []byte(body)})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := conf.WaitContext(ctx); !ok || err != nil {
			t.Fatalf("publish %s: acked %v, %v", body, ok, err)
		}
	}
	var got []string
	for {
		m, ok, err := ch.Get("orders", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, string(m.Body))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("messages in the vhost's orders queue (-want +got):\n%s", diff)
	}
}

// Reset deletes every test vhost no running test holds (one that no test
// holds, a failed test's kept vhost, one whose holding connection closed)
// and the queues and exchanges of the default vhost; it spares the vhost
// of a test still running in this process and of one running in another
// process (a connection holding its exclusive queue), and vhosts that are
// no test's. It runs on an environment of its own, so that no test of this
// package holds anything it should not see; that environment's server is
// then killed from outside and replaced at the next use, where a test's
// vhost works again.
func TestResetAndKilledServer(t *testing.T) {
	// The tests of this package run in parallel: this one's server starts
	// while the suite's does.
	t.Parallel()
	env := newEnv(t, cleanroom.Config{ContainerHealthCheckInterval: time.Nanosecond})
	ctx := context.Background()
	c, err := env.Get(ctx, "rabbitmq")
	if err != nil {
		t.Fatal(err)
	}
	r := c.RabbitMQ()
	ch := channel(t, dial(t, r.URL()))
	if _, err := ch.QueueDeclare("leftover", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare("leftover-x", "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}

	// A vhost of the form tests make that no test holds (a killed
	// process's leftover), and a vhost that is no test's.
	stale := "t_killed_process_" + itest.RandomHex(4)
	for _, v := range []string{stale, "shop"} {
		createVhost(t, r, v)
	}

	failed := &itest.FailedTest{TB: t}
	kept := isolation.NewRabbitMQVhost(failed, r.URL(), r.ManagementURL())
	failed.End()
	if !slices.Contains(vhosts(t, r), kept.Name) {
		t.Fatalf("a failed test's vhost was not kept: %v", vhosts(t, r))
	}
	if len(failed.Logs) != 1 || !strings.Contains(failed.Logs[0], "kept its rabbitmq vhost "+kept.Name) || strings.Contains(failed.Logs[0], r.Password()) ||
		!strings.Contains(failed.Logs[0], r.ManagementURL()+"/#/queues/"+kept.Name) {
		t.Errorf("the failed test's log: %q; want the kept vhost named with its management UI page, and no password", failed.Logs)
	} else if i := strings.Index(failed.Logs[0], "amqp URL in "); i < 0 {
		t.Errorf("the failed test's log names no URL file: %q", failed.Logs[0])
	} else {
		path := strings.TrimSuffix(failed.Logs[0][i+len("amqp URL in "):], ")")
		if b, err := os.ReadFile(path); err != nil || strings.TrimSpace(string(b)) != kept.URL {
			t.Errorf("the kept vhost's URL file %s: %v", path, err)
		}
		os.Remove(path)
	}

	running := isolation.NewRabbitMQVhost(t, r.URL(), r.ManagementURL())
	other := holderProcess(t, r)
	// A process that held a vhost and died: its connection closed, and
	// with it the exclusive queue that held the vhost.
	dead := "t_dead_process_" + itest.RandomHex(4)
	createVhost(t, r, dead)
	deadConn, err := amqp.Dial(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := channel(t, deadConn).QueueDeclare("cleanroom.held."+dead, false, false, true, false, nil); err != nil {
		t.Fatal(err)
	}
	deadConn.Close()

	if err := env.Reset(ctx, "rabbitmq"); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	want := []string{"/", other, "shop", running.Name}
	slices.Sort(want)
	if diff := cmp.Diff(want, vhosts(t, r)); diff != "" {
		t.Errorf("vhosts after Reset (-want +got):\n%s", diff)
	}
	var qs []struct {
		Name      string
		Exclusive bool
	}
	management(t, r, "/api/queues/%2F", &qs)
	for _, q := range qs {
		if !q.Exclusive {
			t.Errorf("queue %s of the default vhost survived Reset", q.Name)
		}
	}
	var xs []struct{ Name string }
	management(t, r, "/api/exchanges/%2F", &xs)
	for _, x := range xs {
		if x.Name == "leftover-x" {
			t.Error("exchange leftover-x of the default vhost survived Reset")
		}
	}
	// The running test's vhost still works.
	useVhost(t, running, 0)

	pc := itest.Podman(t)
	if err := pc.StopContainer(ctx, c.ID, 0); err != nil {
		t.Fatalf("kill: %v", err)
	}
	second, err := env.Get(ctx, "rabbitmq")
	if err != nil {
		t.Fatalf("get after kill: %v", err)
	}
	if second.ID == c.ID {
		t.Fatal("the killed container was handed out again")
	}
	r2 := second.RabbitMQ()
	// A vhost on the replacement: the process's admin connection to the
	// dead server is not in the way.
	useVhost(t, isolation.NewRabbitMQVhost(t, r2.URL(), r2.ManagementURL()), 1)
}

// holderProcess holds a vhost as a test in another process would: a
// connection of its own holds the vhost's exclusive queue until t ends.
// It returns the vhost.
func holderProcess(t *testing.T, r *cleanroom.RabbitMQServer) string {
	t.Helper()
	v := "t_other_process_" + itest.RandomHex(4)
	createVhost(t, r, v)
	ch := channel(t, dial(t, r.URL()))
	if _, err := ch.QueueDeclare("cleanroom.held."+v, false, false, true, false, nil); err != nil {
		t.Fatal(err)
	}
	return v
}

// createVhost PUTs vhost through the management API, as the server's user.
func createVhost(t *testing.T, r *cleanroom.RabbitMQServer, vhost string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, r.ManagementURL()+"/api/vhosts/"+url.PathEscape(vhost), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(r.User(), r.Password())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("create vhost %s: %v", vhost, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusNoContent {
		t.Fatalf("create vhost %s: %s", vhost, resp.Status)
	}
}

// newEnv is an environment of the test's own (itest.NewEnv) with services,
// the RabbitMQ service when none are given, on the package's image.
func newEnv(t *testing.T, cfg cleanroom.Config, services ...cleanroom.Service) *cleanroom.Environment {
	t.Helper()
	if services == nil {
		services = []cleanroom.Service{cleanroom.RabbitMQ()}
	}
	cfg.Images = map[string]string{"rabbitmq": rabbitmqImage}
	return itest.NewEnv(t, "it-rabbitmq-", cfg, services...)
}
