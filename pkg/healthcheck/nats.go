package healthcheck

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// NATS succeeds when the NATS server at url ("nats://host:port", with
// "user:password@" or a "token@" for servers that want them) accepts a
// CONNECT and answers PING with PONG. When the server's INFO says that
// JetStream is on, the probe also asks JetStream for its account info
// ($JS.API.INFO) and wants an answer without an error, so a server whose
// JetStream is not up yet is not ready. It speaks the client protocol
// itself (no client library); one check costs a connection and one or two
// round trips.
func NATS(rawURL string) Probe {
	name := "nats PING"
	u, err := url.Parse(rawURL)
	if err == nil && u.Host != "" {
		name = "nats PING at " + u.Host
	}
	return Func(name, func(ctx context.Context) error {
		if err != nil || u.Host == "" {
			return fmt.Errorf("not a nats:// URL: %q", redactURL(rawURL))
		}
		c, err := dial(ctx, u.Host)
		if err != nil {
			return err
		}
		defer c.Close()
		return natsCheck(c, u.User)
	})
}

// natsInfo is the part of the server's INFO the probe reads.
type natsInfo struct {
	JetStream    bool `json:"jetstream"`
	AuthRequired bool `json:"auth_required"`
}

// natsCheck runs the probe's exchange on an open connection.
func natsCheck(c net.Conn, user *url.Userinfo) error {
	r := bufio.NewReader(c)
	line, err := readLine(r)
	if err != nil {
		return fmt.Errorf("read INFO: %w", err)
	}
	op, arg, _ := strings.Cut(line, " ")
	if !strings.EqualFold(op, "INFO") {
		return fmt.Errorf("the server said %q, not INFO: is it a NATS server?", clip(line))
	}
	var info natsInfo
	if err := json.Unmarshal([]byte(arg), &info); err != nil {
		return fmt.Errorf("read INFO: %w", err)
	}
	connect := map[string]any{
		"verbose": false, "pedantic": false, "lang": "go", "version": "cleanroom-healthcheck",
		"name": "cleanroom-healthcheck", "protocol": 1, "headers": true, "no_responders": true,
	}
	if user != nil {
		if pass, ok := user.Password(); ok {
			connect["user"], connect["pass"] = user.Username(), pass
		} else {
			connect["auth_token"] = user.Username()
		}
	}
	js, _ := json.Marshal(connect)
	if _, err := fmt.Fprintf(c, "CONNECT %s\r\nPING\r\n", js); err != nil {
		return err
	}
	if err := natsAwait(c, r, "PONG", ""); err != nil {
		return err
	}
	if !info.JetStream {
		return nil
	}
	inbox := "_INBOX.cleanroom_probe." + randomHex8()
	if _, err := fmt.Fprintf(c, "SUB %s 1\r\nPUB $JS.API.INFO %s 0\r\n\r\n", inbox, inbox); err != nil {
		return err
	}
	return natsAwait(c, r, "MSG", inbox)
}

// natsAwait reads protocol lines until want arrives: "PONG", or "MSG" (a
// message, or a status-only message, to subject). It answers the server's
// PINGs and fails on -ERR.
func natsAwait(c net.Conn, r *bufio.Reader, want, subject string) error {
	for {
		line, err := readLine(r)
		if err != nil {
			return fmt.Errorf("wait for %s: %w", want, err)
		}
		op, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(op) {
		case "PING":
			if _, err := io.WriteString(c, "PONG\r\n"); err != nil {
				return err
			}
		case "PONG":
			if want == "PONG" {
				return nil
			}
		case "+OK", "INFO":
		case "-ERR":
			return fmt.Errorf("the server refused: %s", strings.Trim(arg, "'"))
		case "MSG", "HMSG":
			hdr, body, err := readMsg(r, strings.ToUpper(op) == "HMSG", arg)
			if err != nil {
				return err
			}
			if want == "MSG" && strings.HasPrefix(arg, subject+" ") {
				return jsInfoAnswer(hdr, body)
			}
		default:
			return fmt.Errorf("the server said %q", clip(line))
		}
	}
}

// readMsg reads the payload of a MSG ("subject sid [reply] size") or HMSG
// ("subject sid [reply] hdrsize size") and returns headers and body.
func readMsg(r *bufio.Reader, headers bool, arg string) (hdr, body []byte, err error) {
	f := strings.Fields(arg)
	n := 1
	if headers {
		n = 2
	}
	if len(f) < 2+n {
		return nil, nil, fmt.Errorf("a malformed message line %q", clip(arg))
	}
	size, err := strconv.Atoi(f[len(f)-1])
	hsize := 0
	if err == nil && headers {
		hsize, err = strconv.Atoi(f[len(f)-2])
	}
	if err != nil || size < 0 || hsize < 0 || hsize > size || size > 1<<20 {
		return nil, nil, fmt.Errorf("a malformed message line %q", clip(arg))
	}
	buf := make([]byte, size+2)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, nil, fmt.Errorf("read a message: %w", err)
	}
	return buf[:hsize], buf[hsize:size], nil
}

// jsInfoAnswer judges the reply to $JS.API.INFO: a status header (503: no
// responders, JetStream is not listening) or an error in the JSON fails.
func jsInfoAnswer(hdr, body []byte) error {
	if len(hdr) > 0 {
		status, _, _ := strings.Cut(string(hdr), "\r\n")
		if f := strings.Fields(status); len(f) >= 2 && f[1] != "200" {
			return fmt.Errorf("JetStream did not answer $JS.API.INFO: %s", strings.Join(f[1:], " "))
		}
	}
	var reply struct {
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &reply); err != nil {
		return fmt.Errorf("JetStream answered $JS.API.INFO with %q: %w", clip(string(body)), err)
	}
	if reply.Error != nil {
		return fmt.Errorf("JetStream answered $JS.API.INFO with error %d: %s", reply.Error.Code, reply.Error.Description)
	}
	return nil
}

// readLine reads one protocol line without its CRLF; control lines are
// short, a long one is an error.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		part, more, err := r.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, part...)
		if len(b) > 64<<10 {
			return "", errors.New("a protocol line longer than 64 KiB")
		}
		if !more {
			return string(b), nil
		}
	}
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

func randomHex8() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
