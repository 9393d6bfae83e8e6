package cleanroom_test

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
)

// NATS with JetStream for a test package: declared in TestMain, then
// subjects and streams of the test's own in one line.
func ExampleNATSPrefix() {
	// func TestMain(m *testing.M) {
	// 	cleanroom.Main(m, cleanroom.NATS())
	// }
	testOrders := func(t *testing.T) {
		t.Parallel()
		p := cleanroom.NATSPrefix(t) // its own connection and prefix; its streams go with it
		js, err := jetstream.New(p.Conn)
		if err != nil {
			t.Fatal(err)
		}
		_, err = js.CreateStream(t.Context(), jetstream.StreamConfig{
			Name:     p.Name("ORDERS"),                // "t_testorders_1a2b3c4d_ORDERS"
			Subjects: []string{p.Subject("orders.>")}, // "t_testorders_1a2b3c4d.orders.>"
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(t.Context(), p.Subject("orders.new"), []byte("42")); err != nil {
			t.Fatal(err)
		}
	}
	_ = testOrders
}

// The server itself, for code that takes a URL (nats.Connect, the nats
// CLI's --server).
func ExampleNATSFor() {
	testConfig := func(t *testing.T) {
		srv := cleanroom.NATSFor(t)
		t.Setenv("NATS_URL", srv.URL()) // nats://cleanroom:…@127.0.0.1:port
		t.Logf("monitoring at %s/varz", srv.MonitorURL())
	}
	_ = testConfig
}
