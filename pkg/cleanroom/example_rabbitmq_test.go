package cleanroom_test

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
)

// RabbitMQ for a test package: declared in TestMain, then a virtual host
// of the test's own in one line, where its queue names meet no other
// test's.
func ExampleRabbitMQVhost() {
	// func TestMain(m *testing.M) {
	// 	cleanroom.Main(m, cleanroom.RabbitMQ())
	// }
	testOrders := func(t *testing.T) {
		t.Parallel()
		v := cleanroom.RabbitMQVhost(t) // deleted when the test ends
		conn, err := amqp.Dial(v.URL)   // amqp://cleanroom:…@127.0.0.1:port/t_testorders_1a2b3c4d
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ch.QueueDeclare("orders", false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	_ = testOrders
}

// The server itself, for code that takes a URL, and its management API.
func ExampleRabbitMQFor() {
	testConfig := func(t *testing.T) {
		srv := cleanroom.RabbitMQFor(t)
		t.Setenv("AMQP_URL", srv.URL()) // amqp://cleanroom:…@127.0.0.1:port/
		t.Logf("management UI at %s (user %s)", srv.ManagementURL(), srv.User())
	}
	_ = testConfig
}
