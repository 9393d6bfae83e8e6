package healthcheck

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeNATS is a NATS server for one connection: it sends info, reads
// CONNECT and PING, sends pong (a PONG or an -ERR line); when jsReply is
// not empty it then reads SUB and PUB, pings the client once, and answers
// on the subscribed inbox with jsReply (a format taking the inbox and the
// subscription id). It sends the CONNECT's JSON to connects.
func fakeNATS(t *testing.T, info, pong, jsReply string) (addr string, connects <-chan map[string]any) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan map[string]any, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		fmt.Fprintf(c, "%s\r\n", info)
		line, _ := r.ReadString('\n')
		var connect map[string]any
		_ = json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(line), "CONNECT ")), &connect)
		got <- connect
		if line, _ := r.ReadString('\n'); strings.TrimSpace(line) != "PING" {
			return
		}
		fmt.Fprintf(c, "%s\r\n", pong)
		if jsReply == "" {
			_, _ = r.ReadString('\n') // until the client hangs up
			return
		}
		sub, _ := r.ReadString('\n') // SUB inbox sid
		f := strings.Fields(sub)
		pub, _ := r.ReadString('\n') // PUB $JS.API.INFO inbox 0
		if len(f) != 3 || !strings.HasPrefix(pub, "PUB $JS.API.INFO "+f[1]+" 0") {
			fmt.Fprintf(c, "-ERR 'unexpected %q %q'\r\n", sub, pub)
			return
		}
		_, _ = r.ReadString('\n') // the empty payload
		fmt.Fprintf(c, "PING\r\n")
		if line, _ := r.ReadString('\n'); strings.TrimSpace(line) != "PONG" {
			return
		}
		fmt.Fprintf(c, jsReply, f[1], f[2])
		_, _ = r.ReadString('\n')
	}()
	return l.Addr().String(), got
}

func natsMsg(body string) string {
	return "MSG %s %s " + fmt.Sprint(len(body)) + "\r\n" + body + "\r\n"
}

func TestNATS(t *testing.T) {
	const plain = `INFO {"server_id":"x","auth_required":true}`
	const withJS = `INFO {"server_id":"x","auth_required":true,"jetstream":true}`
	noResponders := "NATS/1.0 503\r\n\r\n"
	for _, tc := range []struct {
		name, info, pong, js, url string
		wantErr                   string         // "" for none
		wantAuth                  map[string]any // CONNECT's auth fields
	}{
		{name: "user and password", info: plain, pong: "PONG", url: "nats://cleanroom:s3cret@%s",
			wantAuth: map[string]any{"user": "cleanroom", "pass": "s3cret"}},
		{name: "token", info: plain, pong: "PONG", url: "nats://t0ken@%s",
			wantAuth: map[string]any{"auth_token": "t0ken"}},
		{name: "refused", info: plain, pong: "-ERR 'Authorization Violation'", url: "nats://cleanroom:bad@%s",
			wantErr: "Authorization Violation", wantAuth: map[string]any{"user": "cleanroom", "pass": "bad"}},
		{name: "not NATS", info: "HTTP/1.1 400 Bad Request", url: "nats://%s", wantErr: "not INFO"},
		{name: "jetstream answers", info: withJS, pong: "PONG", url: "nats://%s",
			js: natsMsg(`{"type":"io.nats.jetstream.api.v1.account_info_response","memory":0}`), wantAuth: map[string]any{}},
		{name: "jetstream not listening", info: withJS, pong: "PONG", url: "nats://%s",
			js:      "HMSG %s %s " + fmt.Sprint(len(noResponders)) + " " + fmt.Sprint(len(noResponders)) + "\r\n" + noResponders + "\r\n",
			wantErr: "503", wantAuth: map[string]any{}},
		{name: "jetstream error", info: withJS, pong: "PONG", url: "nats://%s",
			js:      natsMsg(`{"error":{"code":503,"err_code":10039,"description":"jetstream not enabled for account"}}`),
			wantErr: "jetstream not enabled for account", wantAuth: map[string]any{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, connects := fakeNATS(t, tc.info, tc.pong, tc.js)
			p := NATS(fmt.Sprintf(tc.url, addr))
			if want := "nats PING at " + addr; p.String() != want {
				t.Errorf("String() = %q, want %q", p.String(), want)
			}
			err := p.Check(context.Background())
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Check: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Check: %v, want an error with %q", err, tc.wantErr)
			}
			if tc.wantAuth == nil {
				return
			}
			connect := <-connects
			auth := map[string]any{}
			for _, k := range []string{"user", "pass", "auth_token"} {
				if v, ok := connect[k]; ok {
					auth[k] = v
				}
			}
			if diff := cmp.Diff(tc.wantAuth, auth); diff != "" {
				t.Errorf("CONNECT's credentials (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNATSNeedsAURL(t *testing.T) {
	err := NATS("127.0.0.1:4222").Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not a nats:// URL") {
		t.Errorf("a bare address: %v", err)
	}
}
