package healthcheck

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Probe checks once whether a service answers. It returns nil when it does
// and an error saying why not otherwise. Probes are safe for concurrent use.
type Probe interface {
	Check(ctx context.Context) error
	// String names the probe in errors, e.g. "postgres SELECT 1 at 127.0.0.1:5432".
	String() string
}

// Func adapts a function to a Probe.
func Func(name string, check func(ctx context.Context) error) Probe {
	return funcProbe{name, check}
}

type funcProbe struct {
	name  string
	check func(ctx context.Context) error
}

func (p funcProbe) Check(ctx context.Context) error { return p.check(ctx) }
func (p funcProbe) String() string                  { return p.name }

// TCP succeeds when a TCP connection to addr ("host:port") opens.
func TCP(addr string) Probe {
	return Func("tcp connect "+addr, func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// Postgres succeeds when the server at url (a postgres:// URL or key=value
// DSN) accepts a connection and answers SELECT 1.
func Postgres(url string) Probe {
	name := "postgres SELECT 1"
	if cfg, err := pgx.ParseConfig(url); err == nil {
		name = fmt.Sprintf("postgres SELECT 1 at %s:%d", cfg.Host, cfg.Port)
	}
	return Func(name, func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		var one int
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			return err
		}
		return nil
	})
}

// Redis succeeds when the server at addr ("host:port") answers PING with
// PONG. password, when not empty, is sent with AUTH first.
func Redis(addr, password string) Probe {
	return Func("redis PING at "+addr, func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if dl, ok := ctx.Deadline(); ok {
			_ = c.SetDeadline(dl)
		} else {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		}
		r := bufio.NewReader(c)
		if password != "" {
			if err := respCommand(c, r, "+OK", "AUTH", password); err != nil {
				return fmt.Errorf("AUTH: %w", err)
			}
		}
		return respCommand(c, r, "+PONG", "PING")
	})
}

// respCommand sends one command in the Redis protocol and checks the reply.
func respCommand(c net.Conn, r *bufio.Reader, want string, args ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	line = strings.TrimRight(line, "\r\n")
	if line != want {
		return fmt.Errorf("answered %q", line)
	}
	return nil
}

// Options tune Wait. The zero value is usable.
type Options struct {
	// Initial is the pause after the first failed check. Default 10 ms.
	Initial time.Duration
	// Max caps the pause between checks. Default 250 ms.
	Max time.Duration
	// Attempt bounds one check. Default 5 s.
	Attempt time.Duration
}

// Wait runs p until it succeeds or ctx ends, pausing between attempts with
// exponential backoff. On failure the error names the probe, the time waited
// and the last reason.
func Wait(ctx context.Context, p Probe, opts Options) error {
	if opts.Initial <= 0 {
		opts.Initial = 10 * time.Millisecond
	}
	if opts.Max <= 0 {
		opts.Max = 250 * time.Millisecond
	}
	if opts.Attempt <= 0 {
		opts.Attempt = 5 * time.Second
	}
	start := time.Now()
	pause := opts.Initial
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, opts.Attempt)
		err := p.Check(actx)
		cancel()
		if err == nil {
			return nil
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for %s: gave up after %s and %d attempts (%w); last error: %w",
				p, time.Since(start).Round(time.Millisecond), attempt, ctx.Err(), err)
		case <-t.C:
		}
		pause = min(pause*2, opts.Max)
	}
}
