package healthcheck

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// A URL the probe cannot use fails it for good; a server that is not
// listening yet fails it for now; neither puts the password in the error.
func TestRabbitMQProbeErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, u := range []string{"http://cleanroom:s3cret@127.0.0.1:1/", "amqp:///", "::"} {
		err := RabbitMQ(u, "").Check(ctx)
		var p *permanentError
		if !errors.As(err, &p) {
			t.Errorf("RabbitMQ(%q): %v; want a permanent error", u, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("RabbitMQ(%q): the error shows the password: %v", u, err)
		}
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	p := RabbitMQ("amqp://cleanroom:s3cret@"+addr+"/", "http://"+addr)
	err = p.Check(ctx)
	var perm *permanentError
	if err == nil || errors.As(err, &perm) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("probe of a closed port: %v; want a passing error without the password", err)
	}
	if s := p.(interface{ String() string }).String(); !strings.Contains(s, addr) || strings.Contains(s, "s3cret") {
		t.Errorf("probe name %q: want the address, not the password", s)
	}
}
