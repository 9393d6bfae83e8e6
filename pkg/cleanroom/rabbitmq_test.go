package cleanroom

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	amqp "github.com/rabbitmq/amqp091-go"
)

func TestRabbitMQDefinition(t *testing.T) {
	e, _, _ := testEnv(t, Config{Images: map[string]string{"rabbitmq": "localhost/rabbitmq:3"}}, RabbitMQ(), Postgres())
	secret := randomHex(16)
	r := e.byName["rabbitmq"].svc.with(secret)
	if diff := cmp.Diff([]uint16{5672, 15672}, r.ports); diff != "" {
		t.Errorf("rabbitmq ports (-want +got):\n%s", diff)
	}
	wantEnv := map[string]string{"RABBITMQ_DEFAULT_USER": "cleanroom", "RABBITMQ_DEFAULT_PASS": secret}
	if diff := cmp.Diff(wantEnv, r.env); diff != "" {
		t.Errorf("rabbitmq env (-want +got):\n%s", diff)
	}
	if r.image != "localhost/rabbitmq:3" || r.tmpfs["/var/lib/rabbitmq"] == "" || r.command != nil || r.entrypoint != nil {
		t.Errorf("rabbitmq: image %s, tmpfs %v, command %q, entrypoint %q; want the configured image, data on tmpfs, the image's command and entrypoint", r.image, r.tmpfs, r.command, r.entrypoint)
	}
	if e.byName["rabbitmq"].svc.env["RABBITMQ_DEFAULT_PASS"] != "" {
		t.Error("building a pod's definition changed the declared one")
	}
	mine := RabbitMQ(WithEnv("RABBITMQ_DEFAULT_PASS", "mine"))
	own := mine.with(secret)
	if own.env["RABBITMQ_DEFAULT_PASS"] != "mine" {
		t.Errorf("WithEnv RABBITMQ_DEFAULT_PASS is overridden: %q", own.env["RABBITMQ_DEFAULT_PASS"])
	}

	c := &Container{host: "127.0.0.1", ports: map[uint16]uint16{5672: 40001, 15672: 40002}, env: r.env}
	s := c.RabbitMQ()
	if got, want := s.URL(), "amqp://cleanroom:"+secret+"@127.0.0.1:40001/"; got != want {
		t.Errorf("URL %s, want %s", got, want)
	}
	uri, err := amqp.ParseURI(s.URL())
	if err != nil || uri.Vhost != "/" || uri.Password != secret || uri.Port != 40001 {
		t.Errorf("amqp091 reads URL %s as %+v, %v", s.URL(), uri, err)
	}
	if s.Addr() != "127.0.0.1:40001" || s.ManagementURL() != "http://127.0.0.1:40002" || s.User() != "cleanroom" || s.Password() != secret || s.Container() != c {
		t.Errorf("Addr %s ManagementURL %s User %s Password %s", s.Addr(), s.ManagementURL(), s.User(), s.Password())
	}
	if m := (&Container{ports: map[uint16]uint16{5672: 1}}).RabbitMQ().ManagementURL(); m != "" {
		t.Errorf("ManagementURL without a published port: %q, want empty", m)
	}
}

// The official image makes RABBITMQ_DEFAULT_VHOST instead of "/", which
// the service's URL, probe and Reset need: refused before anything starts.
func TestRabbitMQRefusesAnotherDefaultVhost(t *testing.T) {
	_, err := newEnvironment(Config{}.withDefaults(), newFakeEngine(), []Service{RabbitMQ(WithEnv("RABBITMQ_DEFAULT_VHOST", "shop"))})
	if err == nil || !strings.Contains(err.Error(), `RABBITMQ_DEFAULT_VHOST="shop"`) || !strings.Contains(err.Error(), "RabbitMQVhost") {
		t.Errorf("RabbitMQ with RABBITMQ_DEFAULT_VHOST=shop: %v; want an error naming it and RabbitMQVhost", err)
	}
	for _, svc := range []Service{RabbitMQ(WithEnv("RABBITMQ_DEFAULT_VHOST", "/")), Generic("mq", "localhost/rabbitmq:3", WithPort(5672), WithEnv("RABBITMQ_DEFAULT_VHOST", "shop"))} {
		if _, err := newEnvironment(Config{}.withDefaults(), newFakeEngine(), []Service{svc}); err != nil {
			t.Errorf("%s: %v", svc.Name(), err)
		}
	}
}
