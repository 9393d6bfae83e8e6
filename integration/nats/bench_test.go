package nats_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cleanroom-go/cleanroom/internal/itest"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

// Run with: go test -run '^$' -bench NATSIsolation -benchtime 200x ./integration/nats/
//
// BenchmarkNATSIsolation measures what one test pays for its NATS
// isolation, set-up plus tear-down, against the suite's server (JetStream
// store on tmpfs): a bare connection for comparison; a prefix (its own
// connection, the hold, and at the end a look for streams to delete); and
// a prefix whose test made a stream, a consumer and a key-value bucket.
func BenchmarkNATSIsolation(b *testing.B) {
	url := cleanroom.NATSFor(b).URL()
	ctx := context.Background()

	b.Run("connection", func(b *testing.B) {
		for range b.N {
			nc, err := nats.Connect(url)
			if err != nil {
				b.Fatal(err)
			}
			nc.Close()
		}
	})
	b.Run("prefix", func(b *testing.B) {
		tb := &itest.Iteration{TB: b}
		for range b.N {
			isolation.NewNATSPrefix(tb, url)
			tb.End()
		}
	})
	b.Run("prefix-stream-consumer-bucket", func(b *testing.B) {
		tb := &itest.Iteration{TB: b}
		for range b.N {
			p := isolation.NewNATSPrefix(tb, url)
			js, err := jetstream.New(p.Conn)
			if err != nil {
				b.Fatal(err)
			}
			s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: p.Name("ORDERS"), Subjects: []string{p.Subject("orders.>")}})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: p.Name("worker")}); err != nil {
				b.Fatal(err)
			}
			if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: p.Name("cache")}); err != nil {
				b.Fatal(err)
			}
			tb.End()
		}
	})
}
