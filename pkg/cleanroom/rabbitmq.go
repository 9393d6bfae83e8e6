package cleanroom

import (
	"context"
	"net/url"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

// DefaultRabbitMQImage is the RabbitMQ service's image: the official one
// with the management plugin, pinned. Override it as the others (Image,
// [cleanroom.images] rabbitmq = "…", CLEANROOM_RABBITMQ_IMAGE).
const DefaultRabbitMQImage = "docker.io/library/rabbitmq:3.13.7-management"

// The RabbitMQ service's ports, user and data directory.
const (
	rabbitmqPort           = 5672
	rabbitmqManagementPort = 15672
	rabbitmqUser           = "cleanroom"
	rabbitmqDataDir        = "/var/lib/rabbitmq"
)

// RabbitMQ is a RabbitMQ server named "rabbitmq", for tests: AMQP 0-9-1 on
// port 5672, the management HTTP API on 15672, its data on a tmpfs
// (WithoutTmpfs puts it on the container's disk), and clients log in as
// user "cleanroom" (an administrator) with a random password per suite
// (RABBITMQ_DEFAULT_USER and RABBITMQ_DEFAULT_PASS, the official image's
// contract; set them with WithEnv to choose others; a
// RABBITMQ_DEFAULT_VHOST other than "/" is refused, as the service's URL,
// probe and Reset use "/"). It is ready when an
// AMQP connection and a channel open and the management API answers
// (healthcheck.RabbitMQ). Environment.Reset deletes every test vhost that
// no running test holds (see RabbitMQVhost) and the queues and exchanges
// that clients declared in the default vhost "/".
func RabbitMQ(opts ...Option) Service {
	s := Service{
		name:  "rabbitmq",
		kind:  "rabbitmq",
		image: DefaultRabbitMQImage,
		ports: []uint16{rabbitmqPort, rabbitmqManagementPort},
		env: map[string]string{
			"RABBITMQ_DEFAULT_USER": rabbitmqUser,
		},
		tmpfs: map[string]string{rabbitmqDataDir: "rw,mode=1777"},
		ready: func(c *Container) healthcheck.Probe {
			r := c.RabbitMQ()
			return healthcheck.RabbitMQ(r.URL(), r.ManagementURL())
		},
		reset: resetRabbitMQ,
		build: func(s *Service, secret string) {
			if s.env["RABBITMQ_DEFAULT_PASS"] == "" {
				s.env["RABBITMQ_DEFAULT_PASS"] = secret
			}
		},
	}
	for _, o := range opts {
		o(&s)
	}
	return s
}

// RabbitMQ views the container as a RabbitMQ server: for a container of
// the RabbitMQ service got with Environment.Get (RabbitMQFor gives it to a
// test).
func (c *Container) RabbitMQ() *RabbitMQServer { return &RabbitMQServer{c: c} }

// RabbitMQServer is the suite's RabbitMQ server: where it is and how to
// log in. Share it freely between parallel tests; give each a vhost of its
// own with RabbitMQVhost.
type RabbitMQServer struct{ c *Container }

// Container is the container behind the server.
func (r *RabbitMQServer) Container() *Container { return r.c }

// Addr is "host:port" of the AMQP port (5672 in the container).
func (r *RabbitMQServer) Addr() string { return r.c.Addr(rabbitmqPort) }

// User is the user clients log in as: "cleanroom" unless
// RABBITMQ_DEFAULT_USER was set.
func (r *RabbitMQServer) User() string { return r.c.Env("RABBITMQ_DEFAULT_USER") }

// Password is the user's password, random per suite unless
// RABBITMQ_DEFAULT_PASS was set.
func (r *RabbitMQServer) Password() string { return r.c.Env("RABBITMQ_DEFAULT_PASS") }

// URL is amqp://cleanroom:password@host:port/, the default vhost "/",
// what amqp091-go's Dial takes.
func (r *RabbitMQServer) URL() string {
	u := url.URL{Scheme: "amqp", User: url.UserPassword(r.User(), r.Password()), Host: r.Addr(), Path: "/"}
	return u.String()
}

// ManagementURL is the management HTTP API and UI, http://host:port (15672
// in the container); log in as User with Password. Empty when the port is
// not published.
func (r *RabbitMQServer) ManagementURL() string {
	if r.c.Port(rabbitmqManagementPort) == 0 {
		return ""
	}
	return "http://" + r.c.Addr(rabbitmqManagementPort)
}

// RabbitMQFor returns the suite's RabbitMQ server for test t, starting it
// on first use, as PostgresFor. Parallel tests share the server; the
// container is not replaced while t runs.
func RabbitMQFor(t TB) *RabbitMQServer {
	t.Helper()
	return currentFor(t).use(t, "rabbitmq").RabbitMQ()
}

// RabbitMQVhost gives test t a virtual host of its own on the suite's
// RabbitMQ (see isolation.NewRabbitMQVhost), with every permission for
// the service's user: its queues and exchanges meet no other test's, so
// parallel tests may use the same names. Dial v.URL. The vhost is deleted
// when t ends, or kept for inspection when t failed (the log says where to
// look), until the next Reset. Safe for parallel tests.
//
//	v := cleanroom.RabbitMQVhost(t)
//	conn, err := amqp.Dial(v.URL)
func RabbitMQVhost(t TB) *isolation.RabbitMQVhost {
	t.Helper()
	r := RabbitMQFor(t)
	return isolation.NewRabbitMQVhost(t, r.URL(), r.ManagementURL())
}

// resetRabbitMQ deletes the test vhosts that no running test holds, and
// the queues and exchanges of the default vhost.
func resetRabbitMQ(ctx context.Context, c *Container) error {
	r := c.RabbitMQ()
	a, err := isolate.NewRabbitMQAdmin(r.URL(), r.ManagementURL())
	if err != nil {
		return err
	}
	defer a.Close()
	_, err = a.ResetRabbitMQ(ctx)
	return err
}
