package cleanroom

import (
	"context"
	"net/url"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

// DefaultNATSImage is the NATS service's image: the official one, pinned.
// Override it as the others (Image, [cleanroom.images] nats = "…",
// CLEANROOM_NATS_IMAGE).
const DefaultNATSImage = "docker.io/library/nats:2.10.24"

// The NATS service's ports, user and JetStream store.
const (
	natsPort        = 4222
	natsMonitorPort = 8222
	natsUser        = "cleanroom"
	natsStoreDir    = "/data"
)

// NATS is a NATS server named "nats", for tests: JetStream on, its store
// on a tmpfs (WithoutTmpfs puts it on the container's disk), HTTP
// monitoring on port 8222, and clients log in as user "cleanroom" with a
// random password per suite. It is ready when it answers the client
// protocol (CONNECT, PING/PONG) and its JetStream answers an account-info
// request (healthcheck.NATS). Environment.Reset deletes the JetStream
// streams, key-value buckets and object stores that no running test holds
// (see NATSPrefix). WithCmd replaces the server's flags (the official
// image's entrypoint is the server itself): keep --user cleanroom and
// --pass, or give the service a WithReady of your own.
func NATS(opts ...Option) Service {
	s := Service{
		name:  "nats",
		kind:  "nats",
		image: DefaultNATSImage,
		ports: []uint16{natsPort, natsMonitorPort},
		env:   map[string]string{},
		tmpfs: map[string]string{natsStoreDir: "rw,mode=1777"},
		ready: func(c *Container) healthcheck.Probe { return healthcheck.NATS(c.NATS().URL()) },
		reset: resetNATS,
		build: func(s *Service, secret string) {
			if s.command == nil {
				s.command = []string{
					"--jetstream", "--store_dir", natsStoreDir,
					"--http_port", strconv.Itoa(natsMonitorPort),
					"--user", natsUser, "--pass", secret,
				}
			}
		},
	}
	for _, o := range opts {
		o(&s)
	}
	return s
}

// NATS views the container as a NATS server: for a container of the NATS
// service got with Environment.Get (NATSFor gives it to a test).
func (c *Container) NATS() *NATSServer { return &NATSServer{c: c} }

// NATSServer is the suite's NATS server: where it is and how to log in.
// Share it freely between parallel tests; give each its own subjects and
// streams with NATSPrefix.
type NATSServer struct{ c *Container }

// Container is the container behind the server.
func (n *NATSServer) Container() *Container { return n.c }

// Addr is "host:port" of the client port (4222 in the container).
func (n *NATSServer) Addr() string { return n.c.Addr(natsPort) }

// User is the user clients log in as: "cleanroom".
func (n *NATSServer) User() string { return natsUser }

// Password is the user's password, random per suite.
func (n *NATSServer) Password() string { return n.c.secret }

// URL is nats://cleanroom:password@host:port, what nats.Connect (and the
// nats CLI's --server) takes.
func (n *NATSServer) URL() string {
	u := url.URL{Scheme: "nats", User: url.UserPassword(natsUser, n.c.secret), Host: n.Addr()}
	return u.String()
}

// MonitorURL is the server's HTTP monitoring endpoint,
// http://host:port (8222 in the container): /varz, /jsz, /healthz.
// Empty when the port is not published.
func (n *NATSServer) MonitorURL() string {
	if n.c.Port(natsMonitorPort) == 0 {
		return ""
	}
	return "http://" + n.c.Addr(natsMonitorPort)
}

// NATSFor returns the suite's NATS server for test t, starting it on
// first use, as PostgresFor. Parallel tests share the server; the
// container is not replaced while t runs.
func NATSFor(t TB) *NATSServer {
	t.Helper()
	return currentFor(t).use(t, "nats").NATS()
}

// NATSPrefix gives test t a subject prefix of its own on the suite's NATS
// and a connection of its own (see isolation.NewNATSPrefix): it publishes
// and subscribes under p.Subject(…), and names its streams, buckets and
// durable consumers p.Name(…). When t ends, the connection is closed and
// what the prefix owns in JetStream is deleted (kept for inspection when t
// failed, until the next Reset). Safe for parallel tests.
//
//	p := cleanroom.NATSPrefix(t)
//	js, _ := jetstream.New(p.Conn)
//	js.CreateStream(ctx, jetstream.StreamConfig{Name: p.Name("ORDERS"), Subjects: []string{p.Subject("orders.>")}})
func NATSPrefix(t TB) *isolation.NATSPrefix {
	t.Helper()
	return isolation.NewNATSPrefix(t, NATSFor(t).URL())
}

// resetNATS deletes every JetStream stream (key-value buckets and object
// stores too) that no running test's NATSPrefix holds.
func resetNATS(ctx context.Context, c *Container) error {
	nc, err := nats.Connect(c.NATS().URL(), nats.Name("cleanroom reset"), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	_, err = isolate.DeleteUnheld(ctx, nc)
	return err
}
