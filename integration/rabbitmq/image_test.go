package rabbitmq_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/cleanroom-go/cleanroom/internal/itest"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
)

// The image honours the official rabbitmq image's contract (its
// -management variant) as Generic services use it, as its recipe says:
//
//   - without RABBITMQ_DEFAULT_*: user guest, password guest, an
//     administrator, logs in from outside the container (through the
//     pod's published port) to vhost "/", over AMQP on 5672 and to the
//     management API on 15672;
//   - the server runs as uid 999, which owns /var/lib/rabbitmq;
//   - with RABBITMQ_DEFAULT_USER, _PASS and _VHOST: that user logs in to
//     that vhost, and there is no guest;
//   - a command that starts with "-" is rabbitmq-server's flags:
//     "-rabbit tcp_listeners [5673]" reaches the Erlang VM and moves AMQP
//     from 5672 to 5673 (with the environment above honoured all the same).
//
// Each server has a pod of its own: the containers of a pod share its
// network, and two RabbitMQ nodes there would both want ports 5672, 15672
// and 25672 and the node name rabbit@localhost in one epmd. Both start at
// once, not in parallel subtests: a server's boot takes 8–12 s (about 8 s
// of CPU), and parallel subtests would wait for slots the package's other
// parallel tests hold (-test.parallel is GOMAXPROCS).
func TestImageContract(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	guest := func(c *cleanroom.Container) string { return "amqp://guest:guest@" + c.Addr(5672) + "/" }
	alice := func(c *cleanroom.Container) string { return "amqp://alice:s3cret-pass@" + c.Addr(5673) + "/shop" }
	// service is a Generic service of the image, ready when amqpURL(c)
	// opens a channel and, as that URL's user, the management API answers.
	service := func(amqpURL func(c *cleanroom.Container) string, opts ...cleanroom.Option) cleanroom.Service {
		return cleanroom.Generic("rabbitmq-image", rabbitmqImage, append(opts, cleanroom.WithReady(func(c *cleanroom.Container) healthcheck.Probe {
			return healthcheck.RabbitMQ(amqpURL(c), "http://"+c.Addr(15672))
		}))...)
	}
	envs := []*cleanroom.Environment{
		newEnv(t, cleanroom.Config{}, service(guest, cleanroom.WithPort(5672, 15672))),
		newEnv(t, cleanroom.Config{}, service(alice, cleanroom.WithPort(5672, 5673, 15672),
			cleanroom.WithEnv("RABBITMQ_DEFAULT_USER", "alice"),
			cleanroom.WithEnv("RABBITMQ_DEFAULT_PASS", "s3cret-pass"),
			cleanroom.WithEnv("RABBITMQ_DEFAULT_VHOST", "shop"),
			cleanroom.WithCmd("-rabbit", "tcp_listeners", "[5673]"))),
	}
	// They go at once too; newEnv's clean-ups, which run after this one,
	// find them closed and check that nothing is left.
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, env := range envs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = env.Close(ctx) // reported by newEnv's clean-up
			}()
		}
		wg.Wait()
	})
	cs := make([]*cleanroom.Container, len(envs))
	errs := make([]error, len(envs))
	var wg sync.WaitGroup
	for i, env := range envs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs[i], errs[i] = env.Get(ctx, "rabbitmq-image")
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	t.Run("defaults", func(t *testing.T) {
		c := cs[0]
		// From outside the container, through the published port: guest is
		// not restricted to loopback (the server's default refuses it:
		// "user 'guest' can only connect via localhost").
		ch := channel(t, dial(t, guest(c)))
		if _, err := ch.QueueDeclare("contract", false, true, true, false, nil); err != nil {
			t.Errorf("guest declares a queue in vhost /: %v", err)
		}
		var whoami struct {
			Name string
			Tags []string
		}
		managementAs(t, c, "guest", "guest", "/api/whoami", &whoami)
		if whoami.Name != "guest" || !slices.Contains(whoami.Tags, "administrator") {
			t.Errorf("management API whoami as guest: %+v; want guest, an administrator", whoami)
		}
		if diff := cmp.Diff([]string{"/"}, names(t, c, "guest", "guest", "/api/vhosts")); diff != "" {
			t.Errorf("vhosts (-want +got):\n%s", diff)
		}

		// Started as root, as the official image is; the server (the
		// rabbitmq-server script, pid 1, and the Erlang VM it starts) runs
		// as rabbitmq (uid 999), which owns the data directory.
		res, err := itest.Podman(t).Exec(ctx, c.ID, []string{"sh", "-c", "stat -c %u /proc/1 /proc/$(pidof -s beam.smp) /var/lib/rabbitmq"})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("stat: %+v %s, %v", res, res.Stderr, err)
		}
		if diff := cmp.Diff([]string{"999", "999", "999"}, strings.Fields(string(res.Stdout))); diff != "" {
			t.Errorf("uid of pid 1, of beam.smp and of /var/lib/rabbitmq (-want +got):\n%s", diff)
		}
	})

	t.Run("default user and flags", func(t *testing.T) {
		c := cs[1]
		ch := channel(t, dial(t, alice(c)))
		if _, err := ch.QueueDeclare("orders", true, false, false, false, nil); err != nil {
			t.Errorf("alice declares a queue in vhost shop: %v", err)
		}
		if diff := cmp.Diff([]string{"alice"}, names(t, c, "alice", "s3cret-pass", "/api/users")); diff != "" {
			t.Errorf("users (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"shop"}, names(t, c, "alice", "s3cret-pass", "/api/vhosts")); diff != "" {
			t.Errorf("vhosts (-want +got):\n%s", diff)
		}
		// (The server answers a refused login after 3 s: one is enough.)
		if conn, err := amqp.Dial("amqp://guest:guest@" + c.Addr(5673) + "/"); err == nil {
			conn.Close()
			t.Error("guest logs in though RABBITMQ_DEFAULT_USER is set")
		} else if e := (*amqp.Error)(nil); !errors.As(err, &e) || e.Code != amqp.AccessRefused {
			t.Errorf("guest's login: %v; want ACCESS_REFUSED", err)
		}

		var overview struct {
			Listeners []struct {
				Protocol string
				Port     int
			}
		}
		managementAs(t, c, "alice", "s3cret-pass", "/api/overview", &overview)
		var amqpPorts []int
		for _, l := range overview.Listeners {
			if l.Protocol == "amqp" {
				amqpPorts = append(amqpPorts, l.Port)
			}
		}
		if diff := cmp.Diff([]int{5673}, amqpPorts); diff != "" {
			t.Errorf("AMQP listeners (-want +got):\n%s", diff)
		}
		if conn, err := amqp.Dial("amqp://alice:s3cret-pass@" + c.Addr(5672) + "/shop"); err == nil {
			conn.Close()
			t.Error("AMQP answers on 5672 too: the flag should replace the configured listener")
		}
	})
}

// managementAs GETs path of the management API of container c (port
// 15672) as user and decodes the JSON answer into out.
func managementAs(t *testing.T, c *cleanroom.Container, user, pass, path string, out any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+c.Addr(15672)+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s as %s: %s", path, user, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// names lists the names of what path of c's management API lists, sorted.
func names(t *testing.T, c *cleanroom.Container, user, pass, path string) []string {
	t.Helper()
	var xs []struct{ Name string }
	managementAs(t, c, user, pass, path, &xs)
	var out []string
	for _, x := range xs {
		out = append(out, x.Name)
	}
	slices.Sort(out)
	return out
}
