package isolation_test

import (
	"os"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

// A subject prefix of the test's own on any NATS server: subscribe and
// publish under it; what it makes in JetStream is deleted when the test
// ends.
func ExampleNewNATSPrefix() {
	testNotify := func(t *testing.T) {
		t.Parallel()
		p := isolation.NewNATSPrefix(t, os.Getenv("NATS_URL"))
		got := make(chan *nats.Msg, 1)
		if _, err := p.Conn.ChanSubscribe(p.Subject("mail.>"), got); err != nil {
			t.Fatal(err)
		}
		if err := p.Conn.Publish(p.Subject("mail.sent"), []byte("a@example.com")); err != nil {
			t.Fatal(err)
		}
		<-got // only this test's messages arrive here
	}
	_ = testNotify
}
