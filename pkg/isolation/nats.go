package isolation

import (
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
)

// NATSPrefix is one test's part of a shared NATS server (NewNATSPrefix):
// the subjects under its Prefix, and the JetStream streams, key-value
// buckets, object stores and consumers named with it.
type NATSPrefix struct {
	// Prefix is unique to the test: "t_", the test's name in lower case,
	// 8 random hex digits ("t_testorders_paid_1a2b3c4d"). It is a valid
	// subject token and a valid start of stream, bucket and consumer
	// names.
	Prefix string
	// Conn is a connection of the test's own, closed when the test ends.
	Conn *nats.Conn
}

// Subject is name under the test's prefix: Subject("orders.paid") is
// "<prefix>.orders.paid". Publish and subscribe with it; streams whose
// subjects all lie under the prefix are the test's.
func (p *NATSPrefix) Subject(name string) string { return p.Prefix + "." + name }

// Name is a stream, key-value bucket, object store or consumer name of
// the test's: Name("ORDERS") is "<prefix>_ORDERS".
func (p *NATSPrefix) Name(name string) string { return p.Prefix + "_" + name }

// NewNATSPrefix gives test t a prefix of its own on the NATS server at url
// (nats://user:password@host:port) and a connection to it. The test must
// put its subjects under the prefix (Subject) and name its streams,
// buckets and durable consumers with it (Name), or give its streams only
// subjects under the prefix: NATS has no cheaper boundary that a client
// can draw at run time (accounts need the server's configuration). When t
// ends, the connection is closed and the test's streams (with their
// consumers), buckets and object stores are deleted, as are consumers it
// named, or whose filters lie under the prefix, on other streams; when t
// failed they are kept for inspection (the log says how to look at them)
// until a suite-wide reset. Costs a connection per test (see the
// isolation benchmarks). Safe for parallel tests.
//
// While t runs, its prefix is held: the process's admin connection to the
// server answers on a subject of the prefix, so a suite-wide reset
// (cleanroom's Environment.Reset) spares its streams; the hold goes with
// the process, even when it is killed.
func NewNATSPrefix(t TB, url string) *NATSPrefix {
	t.Helper()
	ctx, cancel := setupContext()
	defer cancel()
	admin, err := isolate.NATSAdmin(url)
	if err != nil {
		t.Fatalf("%v", err)
		return nil
	}
	prefix := isolate.NATSPrefixName(t.Name())
	release, err := isolate.Hold(ctx, admin, prefix)
	if err != nil {
		t.Fatalf("%v", err)
		return nil
	}
	nc, err := nats.Connect(url, nats.Name("cleanroom "+t.Name()))
	if err != nil {
		release()
		t.Fatalf("isolation: connect to nats at %s: %v", isolate.Redact(url), err)
		return nil
	}
	t.Cleanup(func() {
		nc.Close()
		defer release()
		ctx, cancel := setupContext()
		defer cancel()
		if t.Failed() {
			streams, err := isolate.PrefixedStreams(ctx, admin, prefix)
			if err != nil {
				t.Logf("%v", err)
			}
			if len(streams) > 0 {
				t.Logf("isolation: %s failed; kept its nats streams %s for inspection until the next reset: %s", t.Name(), strings.Join(streams, ", "), natsLine(prefix, url, streams[0]))
			}
			return
		}
		if _, err := isolate.DeletePrefixed(ctx, admin, prefix); err != nil {
			t.Errorf("%v", err)
		}
	})
	return &NATSPrefix{Prefix: prefix, Conn: nc}
}

// natsLine is the nats CLI command that shows a kept stream, with the URL
// (password and all) in a file of this user's, as psqlLine does.
func natsLine(prefix, url, stream string) string {
	path, err := keepURL(prefix, url)
	if err != nil {
		return fmt.Sprintf("nats --server '%s' stream info %s  (the password is the suite's; the URL could not be written to a file: %v)", isolate.Redact(url), stream, err)
	}
	return fmt.Sprintf("nats --server \"$(cat %s)\" stream info %s", path, stream)
}
