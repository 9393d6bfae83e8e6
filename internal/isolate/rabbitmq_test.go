package isolate

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestRabbitMQVhostName(t *testing.T) {
	for _, test := range []string{"TestOrders/paid order (EUR)", "Test", "ß/√", "TestA/b_c"} {
		v := RabbitMQVhostName(test)
		if !IsTestVhost(v) {
			t.Errorf("RabbitMQVhostName(%q) = %q: not of the form a reset deletes", test, v)
		}
	}
	for _, v := range []string{"/", "orders", "t_orders", "t_x_1a2b3c4d_extra", "T_X_1A2B3C4D"} {
		if IsTestVhost(v) {
			t.Errorf("IsTestVhost(%q): a vhost no test made would be reset", v)
		}
	}
	if RabbitMQVhostName("TestX") == RabbitMQVhostName("TestX") {
		t.Error("two vhosts for one test are equal")
	}
	if HeldQueue("t_x_1a2b3c4d") != "cleanroom.held.t_x_1a2b3c4d" {
		t.Errorf("HeldQueue: %s", HeldQueue("t_x_1a2b3c4d"))
	}
}

// VhostURL's result is what amqp091-go reads as the vhost, the password
// with characters that need escaping included.
func TestVhostURL(t *testing.T) {
	for _, tc := range []struct{ base, vhost string }{
		{"amqp://cleanroom:pw@127.0.0.1:5672/", "t_x_1a2b3c4d"},
		{"amqp://cleanroom:p%2Fw%40@127.0.0.1:5672", "t_y_1a2b3c4d"},
		{"amqp://u:p@h:1/old", "a/b c"},
		{"amqp://u:p@h:1/", "/"},
	} {
		got, err := VhostURL(tc.base, tc.vhost)
		if err != nil {
			t.Fatalf("VhostURL(%s, %s): %v", tc.base, tc.vhost, err)
		}
		uri, err := amqp.ParseURI(got)
		if err != nil {
			t.Fatalf("amqp.ParseURI(%s): %v", got, err)
		}
		base, _ := amqp.ParseURI(tc.base)
		if uri.Vhost != tc.vhost || uri.Password != base.Password || uri.Username != base.Username || uri.Host != base.Host || uri.Port != base.Port {
			t.Errorf("VhostURL(%s, %q) = %s: parsed as vhost %q user %q password %q host %s:%d", tc.base, tc.vhost, got, uri.Vhost, uri.Username, uri.Password, uri.Host, uri.Port)
		}
	}
}
