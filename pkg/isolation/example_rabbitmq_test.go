package isolation_test

import (
	"os"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

// A virtual host of the test's own on any RabbitMQ server with the
// management plugin: dial its URL; it is deleted with everything in it
// when the test ends.
func ExampleNewRabbitMQVhost() {
	testNotify := func(t *testing.T) {
		t.Parallel()
		v := isolation.NewRabbitMQVhost(t, os.Getenv("AMQP_URL"), os.Getenv("RABBITMQ_MANAGEMENT_URL"))
		conn, err := amqp.Dial(v.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ch.QueueDeclare("mail", false, false, false, false, nil); err != nil {
			t.Fatal(err) // the same name in every test: each has its own vhost
		}
	}
	_ = testNotify
}
