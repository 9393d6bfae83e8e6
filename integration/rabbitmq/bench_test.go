package rabbitmq_test

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/cleanroom-go/cleanroom/internal/itest"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

// Run with: go test -run '^$' -bench RabbitMQIsolation -benchtime 50x ./integration/rabbitmq/
//
// BenchmarkRabbitMQIsolation measures what one test pays for its RabbitMQ
// isolation, set-up plus tear-down, against the suite's server (data on
// tmpfs): a bare AMQP connection for comparison; a vhost (the hold, the
// vhost and its permissions made, then deleted); and a vhost that the
// test connected to and declared a queue in.
func BenchmarkRabbitMQIsolation(b *testing.B) {
	r := cleanroom.RabbitMQFor(b)

	b.Run("connection", func(b *testing.B) {
		for range b.N {
			conn, err := amqp.Dial(r.URL())
			if err != nil {
				b.Fatal(err)
			}
			conn.Close()
		}
	})
	b.Run("vhost", func(b *testing.B) {
		tb := &itest.Iteration{TB: b}
		for range b.N {
			isolation.NewRabbitMQVhost(tb, r.URL(), r.ManagementURL())
			tb.End()
		}
	})
	b.Run("vhost-connection-queue", func(b *testing.B) {
		tb := &itest.Iteration{TB: b}
		for range b.N {
			v := isolation.NewRabbitMQVhost(tb, r.URL(), r.ManagementURL())
			conn, err := amqp.Dial(v.URL)
			if err != nil {
				b.Fatal(err)
			}
			ch, err := conn.Channel()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := ch.QueueDeclare("orders", false, false, false, false, nil); err != nil {
				b.Fatal(err)
			}
			conn.Close()
			tb.End()
		}
	})
}
