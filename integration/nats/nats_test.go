// Package nats_test checks the NATS service against a real NATS server in
// a container: it starts and is ready by its own protocol, parallel tests
// each get a prefix of their own and see nothing of each other's, what a
// test made in JetStream is gone when it ends, Reset spares only what
// running tests hold, and a killed server is replaced at the next use.
//
//	CLEANROOM_NATS_IMAGE=localhost/cleanroom/nats:2 go test -race -count=1 ./integration/nats/
package nats_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cleanroom-go/cleanroom/internal/itest"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

// natsImage is the image the tests run: built by scripts/build-images.sh
// where no registry is reachable.
var natsImage = itest.EnvOr("CLEANROOM_NATS_IMAGE", "localhost/cleanroom/nats:2")

func TestMain(m *testing.M) {
	cleanroom.Main(m, cleanroom.NATS(cleanroom.WithImage(natsImage)))
}

// connect opens a connection of the test's own to url, closed when t ends.
func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("connect to nats: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func jetStream(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// streamNames lists every stream of the server, sorted.
func streamNames(t testing.TB, js jetstream.JetStream) []string {
	t.Helper()
	var names []string
	l := js.StreamNames(context.Background())
	for n := range l.Name() {
		names = append(names, n)
	}
	if err := l.Err(); err != nil {
		t.Fatalf("list streams: %v", err)
	}
	slices.Sort(names)
	return names
}

func TestNATSIsReadyWithJetStreamMonitoringAndAuth(t *testing.T) {
	srv := cleanroom.NATSFor(t)
	ctx := context.Background()
	nc := connect(t, srv.URL())
	if !nc.IsConnected() {
		t.Fatalf("not connected: %v", nc.Status())
	}
	if _, err := jetStream(t, nc).AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream account info: %v", err)
	}

	// The readiness probe passes against it and fails with a wrong password.
	if err := healthcheck.NATS(srv.URL()).Check(ctx); err != nil {
		t.Errorf("the NATS probe fails on the ready server: %v", err)
	}
	bad := fmt.Sprintf("nats://%s:wrong@%s", srv.User(), srv.Addr())
	if err := healthcheck.NATS(bad).Check(ctx); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Errorf("the NATS probe with a wrong password: %v, want an Authorization Violation", err)
	}
	if _, err := nats.Connect("nats://" + srv.Addr()); err == nil {
		t.Error("the server accepts clients without a password")
	}

	// Monitoring is on: /healthz reports JetStream healthy, /varz the
	// flags the service starts the server with.
	resp, err := http.Get(srv.MonitorURL() + "/healthz?js-enabled-only=true")
	if err != nil {
		t.Fatalf("monitoring endpoint: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz?js-enabled-only=true: %d %s", resp.StatusCode, body)
	}
	resp, err = http.Get(srv.MonitorURL() + "/varz")
	if err != nil {
		t.Fatalf("monitoring endpoint: %v", err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`"store_dir": "/data`, `"auth_required": true`, `"port": 4222`, `"http_port": 8222`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/varz lacks %s:\n%s", want, body)
		}
	}
}

// parallel is how many parallel tests share the server in the isolation
// tests.
const parallel = 20

// Every parallel test makes a stream, a consumer and a key-value bucket
// under its prefix, publishes, and must receive only its own messages.
// Then a test nested in it makes the same and ends; on a connection of its
// own the outer test checks that its stream is intact and that the ended
// tests (its own nested one, and every other that has ended so far) left
// nothing behind.
func TestParallelTestsOwnTheirPrefixes(t *testing.T) {
	srv := cleanroom.NATSFor(t)
	var mu sync.Mutex
	var ended []string // prefixes of tests that have ended
	t.Run("tests", func(t *testing.T) {
		for i := range parallel {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				p := cleanroom.NATSPrefix(t)
				useJetStream(t, p)
				t.Run("nested", func(t *testing.T) {
					var q *isolation.NATSPrefix
					t.Cleanup(func() { // registered first: runs last, after q's clean-up
						mu.Lock()
						defer mu.Unlock()
						ended = append(ended, q.Prefix)
					})
					q = cleanroom.NATSPrefix(t)
					useJetStream(t, q)
				})

				ctx := context.Background()
				fresh := jetStream(t, connect(t, srv.URL()))
				si, err := fresh.Stream(ctx, p.Name("ORDERS"))
				if err != nil {
					t.Fatalf("the test's stream, after a nested test ended: %v", err)
				}
				if n := si.CachedInfo().State.Msgs; n != 3 {
					t.Errorf("the test's stream holds %d messages, want 3", n)
				}
				mu.Lock()
				gone := slices.Clone(ended)
				mu.Unlock()
				var mine, left []string
				for _, name := range streamNames(t, fresh) {
					if strings.Contains(name, p.Prefix) {
						mine = append(mine, name)
					}
					for _, e := range gone {
						if strings.Contains(name, e) {
							left = append(left, name)
						}
					}
				}
				if diff := cmp.Diff([]string{"KV_" + p.Name("cache"), p.Name("ORDERS")}, mine); diff != "" {
					t.Errorf("the test's streams (-want +got):\n%s", diff)
				}
				if len(left) > 0 {
					t.Errorf("ended tests left streams: %v", left)
				}
			})
		}
	})
	// Every test has ended: nothing of theirs is left.
	js := jetStream(t, connect(t, srv.URL()))
	for _, name := range streamNames(t, js) {
		if strings.Contains(name, "t_testparalleltestsowntheirprefixes_") {
			t.Errorf("stream %s outlived its test", name)
		}
	}
	if len(ended) != parallel {
		t.Errorf("%d nested tests ended, want %d", len(ended), parallel)
	}
}

// useJetStream makes a stream with a durable consumer and a key-value
// bucket under p, publishes three messages into the stream, and checks
// that p's subscription receives exactly those.
func useJetStream(t *testing.T, p *isolation.NATSPrefix) {
	t.Helper()
	ctx := context.Background()
	js := jetStream(t, p.Conn)
	got := make(chan string, 100)
	sub, err := p.Conn.Subscribe(p.Subject(">"), func(m *nats.Msg) { got <- m.Subject + "=" + string(m.Data) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: p.Name("ORDERS"), Subjects: []string{p.Subject("orders.>")}})
	if err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if _, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: p.Name("worker")}); err != nil {
		t.Fatalf("create consumer: %v", err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: p.Name("cache")}); err != nil {
		t.Fatalf("create key-value bucket: %v", err)
	}
	var want []string
	for n := range 3 {
		msg := fmt.Sprintf("%s#%d", t.Name(), n)
		if _, err := js.Publish(ctx, p.Subject("orders.new"), []byte(msg)); err != nil {
			t.Fatalf("publish: %v", err)
		}
		want = append(want, p.Subject("orders.new")+"="+msg)
	}
	var seen []string
	for len(seen) < 3 {
		select {
		case m := <-got:
			seen = append(seen, m)
		case <-time.After(10 * time.Second):
			t.Fatalf("received %v, want 3 messages", seen)
		}
	}
	// Anything else that arrives meanwhile is another test's.
	if err := p.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		seen = append(seen, m)
	case <-time.After(20 * time.Millisecond):
	}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("messages on the test's subjects (-want +got):\n%s", diff)
	}
}

// A consumer a test makes on a stream that is not its own (a suite-wide
// one) goes when the test ends; the stream stays.
func TestConsumersOnSharedStreamsGoWithTheirTest(t *testing.T) {
	srv := cleanroom.NATSFor(t)
	ctx := context.Background()
	js := jetStream(t, connect(t, srv.URL()))
	shared := "SHARED_" + itest.RandomHex(4)
	subject := strings.ToLower(shared)
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: shared, Subjects: []string{subject + ".>"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), shared) })
	var names []string
	t.Run("test", func(t *testing.T) {
		p := cleanroom.NATSPrefix(t)
		pjs := jetStream(t, p.Conn)
		named, err := pjs.CreateOrUpdateConsumer(ctx, shared, jetstream.ConsumerConfig{Durable: p.Name("audit"), FilterSubject: subject + ".x"})
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, named.CachedInfo().Name)
	})
	t.Run("other", func(t *testing.T) {
		// Not the prefix's: left alone.
		c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "suite_audit"})
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, c.CachedInfo().Name)
	})
	var left []string
	l := s.ConsumerNames(ctx)
	for n := range l.Name() {
		left = append(left, n)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"suite_audit"}, left); diff != "" {
		t.Errorf("consumers of the shared stream after the tests (made %v) (-want +got):\n%s", names, diff)
	}
	if _, err := js.Stream(ctx, shared); err != nil {
		t.Errorf("the shared stream: %v", err)
	}
}

// Reset deletes every stream (buckets too) no running test holds: a
// stream of no test, a failed test's kept stream and bucket; it spares the
// stream of a test still running in this process and of one running in
// another process. It runs on an environment of its own, so that no test
// of this package holds anything it should not see.
func TestResetDeletesWhatNoRunningTestHolds(t *testing.T) {
	env := newEnv(t, cleanroom.Config{})
	ctx := context.Background()
	c, err := env.Get(ctx, "nats")
	if err != nil {
		t.Fatal(err)
	}
	url := c.NATS().URL()
	js := jetStream(t, connect(t, url))

	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LEFTOVER", Subjects: []string{"leftover.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "settings"}); err != nil {
		t.Fatal(err)
	}

	failed := &itest.FailedTest{TB: t}
	fp := isolation.NewNATSPrefix(failed, url)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: fp.Name("KEPT"), Subjects: []string{fp.Subject(">")}}); err != nil {
		t.Fatal(err)
	}
	failed.End()
	if names := streamNames(t, js); !slices.Contains(names, fp.Name("KEPT")) {
		t.Fatalf("a failed test's stream was not kept: %v", names)
	}
	if len(failed.Logs) != 1 || !strings.Contains(failed.Logs[0], "kept its nats streams "+fp.Name("KEPT")) || strings.Contains(failed.Logs[0], c.NATS().Password()) {
		t.Errorf("the failed test's log: %q; want the kept stream named, and no password", failed.Logs)
	} else if m := regexp.MustCompile(`\$\(cat (\S+)\)`).FindStringSubmatch(failed.Logs[0]); m != nil {
		// The file the log names holds the URL; it outlives a real failed
		// test, not this pretended one.
		if b, err := os.ReadFile(m[1]); err != nil || strings.TrimSpace(string(b)) != url {
			t.Errorf("the kept stream's URL file %s: %q, %v", m[1], b, err)
		}
		os.Remove(m[1])
	} else {
		t.Errorf("the failed test's log names no URL file: %q", failed.Logs[0])
	}

	running := isolation.NewNATSPrefix(t, url)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: running.Name("HELD")}); err != nil {
		t.Fatal(err)
	}
	// Subjects alone tie this one to the running test.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BY_SUBJECT_" + itest.RandomHex(2), Subjects: []string{running.Subject("events.>")}}); err != nil {
		t.Fatal(err)
	}
	// A test running in another process: a holder there.
	other := holderProcess(t, url)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: other + "_HELD", Subjects: []string{other + ".x"}}); err != nil {
		t.Fatal(err)
	}

	if err := env.Reset(ctx, "nats"); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	var want []string
	for _, n := range streamNames(t, js) {
		if strings.HasPrefix(n, "BY_SUBJECT_") {
			n = "BY_SUBJECT_"
		}
		want = append(want, n)
	}
	if diff := cmp.Diff([]string{"BY_SUBJECT_", other + "_HELD", running.Name("HELD")}, want); diff != "" {
		t.Errorf("streams after Reset (-want +got):\n%s", diff)
	}
}

// holderProcess holds a prefix as a test in another process would: on a
// connection of its own, closed when t ends. It returns the prefix.
func holderProcess(t *testing.T, url string) string {
	t.Helper()
	prefix := "t_other_process_" + itest.RandomHex(4)
	nc := connect(t, url)
	if _, err := nc.Subscribe("_CLEANROOM.held."+prefix, func(m *nats.Msg) { _ = m.Respond(nil) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return prefix
}

// A server killed from outside (podman kill) is replaced at its next use,
// and the replacement is ready for JetStream at once.
func TestKilledNATSIsReplacedOnNextUse(t *testing.T) {
	env := newEnv(t, cleanroom.Config{ContainerHealthCheckInterval: time.Nanosecond})
	ctx := context.Background()
	first, err := env.Get(ctx, "nats")
	if err != nil {
		t.Fatal(err)
	}
	pc := itest.Podman(t)
	if err := pc.StopContainer(ctx, first.ID, 0); err != nil {
		t.Fatalf("kill: %v", err)
	}
	second, err := env.Get(ctx, "nats")
	if err != nil {
		t.Fatalf("get after kill: %v", err)
	}
	if second.ID == first.ID {
		t.Fatal("the killed container was handed out again")
	}
	js := jetStream(t, connect(t, second.NATS().URL()))
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "AFTER", Subjects: []string{"after"}}); err != nil {
		t.Errorf("JetStream on the replacement: %v", err)
	}
}

// The image honours the official nats image's contract as Generic
// services use it: without a command it reads nats-server.conf (clients
// on 4222, monitoring on 8222, no password); with flags alone as the
// command, -js turns JetStream on and -m the monitoring port.
func TestImageContract(t *testing.T) {
	env := newEnv(t, cleanroom.Config{},
		cleanroom.Generic("nats-plain", natsImage, cleanroom.WithPort(4222, 8222), cleanroom.WithReady(func(c *cleanroom.Container) healthcheck.Probe {
			return healthcheck.NATS("nats://" + c.Addr(4222))
		})),
		cleanroom.Generic("nats-js", natsImage, cleanroom.WithPort(5222, 9222), cleanroom.WithCmd("-js", "-p", "5222", "-m", "9222"), cleanroom.WithReady(func(c *cleanroom.Container) healthcheck.Probe {
			return healthcheck.HTTP("http://"+c.Addr(9222)+"/healthz?js-enabled-only=true", 200)
		})),
	)
	ctx := context.Background()
	plain, err := env.Get(ctx, "nats-plain")
	if err != nil {
		t.Fatal(err)
	}
	nc := connect(t, "nats://"+plain.Addr(4222))
	if _, err := jetStream(t, nc).AccountInfo(ctx); err == nil {
		t.Error("JetStream is on without -js")
	}
	varz := httpGet(t, "http://"+plain.Addr(8222)+"/varz")
	for _, want := range []string{`"port": 4222`, `"http_port": 8222`, `"cluster_port": 6222`} {
		if !strings.Contains(varz, want) {
			t.Errorf("the default configuration: /varz lacks %s", want)
		}
	}

	js, err := env.Get(ctx, "nats-js")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jetStream(t, connect(t, "nats://"+js.Addr(5222))).AccountInfo(ctx); err != nil {
		t.Errorf("JetStream with -js: %v", err)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s %v", url, resp.StatusCode, b, err)
	}
	return string(b)
}

// newEnv is an environment of the test's own (itest.NewEnv) with services,
// the NATS service when none are given, on the package's image.
func newEnv(t *testing.T, cfg cleanroom.Config, services ...cleanroom.Service) *cleanroom.Environment {
	t.Helper()
	if services == nil {
		services = []cleanroom.Service{cleanroom.NATS()}
	}
	cfg.Images = map[string]string{"nats": natsImage}
	return itest.NewEnv(t, "it-nats-", cfg, services...)
}
