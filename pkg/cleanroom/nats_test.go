package cleanroom

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNATSDefinition(t *testing.T) {
	e, _, _ := testEnv(t, Config{Images: map[string]string{"nats": "localhost/nats:2"}}, NATS(), Postgres())
	secret := randomHex(16)
	n := e.byName["nats"].svc.with(secret)
	want := []string{"--jetstream", "--store_dir", "/data", "--http_port", "8222", "--user", "cleanroom", "--pass", secret}
	if diff := cmp.Diff(want, n.command); diff != "" {
		t.Errorf("nats command (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint16{4222, 8222}, n.ports); diff != "" {
		t.Errorf("nats ports (-want +got):\n%s", diff)
	}
	if n.image != "localhost/nats:2" || n.tmpfs["/data"] == "" || n.entrypoint != nil {
		t.Errorf("nats: image %s, tmpfs %v, entrypoint %q; want the configured image, the store on tmpfs, the image's entrypoint", n.image, n.tmpfs, n.entrypoint)
	}
	if e.byName["nats"].svc.command != nil {
		t.Error("building a pod's definition changed the declared one")
	}
	own := NATS(WithCmd("-js"))
	if built := own.with(secret); !cmp.Equal(built.command, []string{"-js"}) {
		t.Errorf("WithCmd replaces the flags: %q", built.command)
	}

	c := &Container{host: "127.0.0.1", ports: map[uint16]uint16{4222: 40001, 8222: 40002}, secret: secret}
	s := c.NATS()
	if got, want := s.URL(), "nats://cleanroom:"+secret+"@127.0.0.1:40001"; got != want {
		t.Errorf("URL %s, want %s", got, want)
	}
	if s.Addr() != "127.0.0.1:40001" || s.MonitorURL() != "http://127.0.0.1:40002" || s.User() != "cleanroom" || s.Password() != secret {
		t.Errorf("Addr %s MonitorURL %s User %s Password %s", s.Addr(), s.MonitorURL(), s.User(), s.Password())
	}
	if m := (&Container{ports: map[uint16]uint16{4222: 1}}).NATS().MonitorURL(); m != "" {
		t.Errorf("MonitorURL without a published port: %q, want empty", m)
	}
}
