package healthcheck

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
)

// Probe checks once whether a service answers. It returns nil when it does
// and an error saying why not otherwise. Probes are safe for concurrent use.
type Probe interface {
	// Check probes the service once: nil when it answers, otherwise why not.
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

// Check calls the adapted function.
func (p funcProbe) Check(ctx context.Context) error { return p.check(ctx) }

// String returns the name given to Func.
func (p funcProbe) String() string { return p.name }

// TCP succeeds when a TCP connection to addr ("host:port") opens and is
// not hung up at once (see TCPSettle; TCP waits 50 ms for that).
func TCP(addr string) Probe { return TCPSettle(addr, 50*time.Millisecond) }

// TCPSettle succeeds when a TCP connection to addr opens and the other side
// does not close it within settle. The wait matters with rootless Podman:
// its port forwarder accepts every connection on the host port and closes
// it only when the connection inside the container is refused, ~0.2 s
// later (measured here), so a bare connect would call a dead service ready.
// A server that speaks first, or waits for its client, passes; a passing
// check costs up to settle.
func TCPSettle(addr string, settle time.Duration) Probe {
	return Func("tcp connect "+addr, func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if settle <= 0 {
			return nil
		}
		deadline := time.Now().Add(settle)
		if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
			deadline = dl
		}
		_ = c.SetReadDeadline(deadline)
		var b [1]byte
		_, err = c.Read(b[:])
		var ne net.Error
		if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			return nil
		}
		return fmt.Errorf("connection closed at once (%v): nothing listens behind the port", err)
	})
}

// Postgres succeeds when the server at url (a postgres:// URL or key=value
// DSN) answers SELECT 1. The probe keeps its connection between checks, so
// a repeated check costs one round trip (≈ 0.1 ms) instead of a new
// connection with password authentication (≈ 5–10 ms); a broken connection
// is replaced at once. Close releases it.
func Postgres(url string) *PostgresProbe {
	name := "postgres SELECT 1"
	if cfg, err := pgx.ParseConfig(url); err == nil {
		name = fmt.Sprintf("postgres SELECT 1 at %s:%d", cfg.Host, cfg.Port)
	}
	return &PostgresProbe{url: url, name: name}
}

// PostgresProbe is the probe Postgres returns.
type PostgresProbe struct {
	url, name string
	mu        sync.Mutex
	conn      *pgx.Conn
}

// String names the probe in errors: "postgres SELECT 1 at host:port" (the
// address is left out when url cannot be parsed).
func (p *PostgresProbe) String() string { return p.name }

// Check runs SELECT 1, connecting first when it holds no connection.
func (p *PostgresProbe) Check(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		if err := selectOne(ctx, p.conn); err == nil {
			return nil
		}
		p.conn.Close(context.WithoutCancel(ctx))
		p.conn = nil
	}
	conn, err := pgx.Connect(ctx, p.url)
	if err != nil {
		return err
	}
	if err := selectOne(ctx, conn); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return err
	}
	p.conn = conn
	return nil
}

// Close closes the kept connection, if any.
func (p *PostgresProbe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := p.conn.Close(ctx)
	p.conn = nil
	return err
}

func selectOne(ctx context.Context, conn *pgx.Conn) error {
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// Redis succeeds when the server at addr ("host:port") answers PING with
// PONG. password, when not empty, is sent with AUTH first.
func Redis(addr, password string) Probe {
	return Func("redis PING at "+addr, func(ctx context.Context) error {
		c, err := dial(ctx, addr)
		if err != nil {
			return err
		}
		defer c.Close()
		r := bufio.NewReader(c)
		if password != "" {
			if err := respCommand(c, r, "+OK", "AUTH", password); err != nil {
				return fmt.Errorf("AUTH: %w", err)
			}
		}
		return respCommand(c, r, "+PONG", "PING")
	})
}

// dial opens a TCP connection to addr for one check, its deadline ctx's
// (5 s when ctx has none), for the probes that speak a protocol
// themselves.
func dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	}
	return c, nil
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
	// Wake, when it delivers, ends a pause early and the check runs at
	// once: a server that logs its readiness (a new log line arriving on
	// this channel) is probed the moment it says so, not at the next step.
	Wake <-chan struct{}
}

// Permanent marks a check's error as one no retry can cure (the container
// exited, say): Wait returns it at once instead of polling on.
func Permanent(err error) error { return &permanentError{err} }

type permanentError struct{ err error }

// Error returns the marked error's message unchanged.
func (e *permanentError) Error() string { return e.err.Error() }

// Unwrap returns the error given to Permanent.
func (e *permanentError) Unwrap() error { return e.err }

// Wait runs p until it succeeds or ctx ends, pausing between attempts with
// exponential backoff. On failure the error names the probe, the time waited
// and the last reason. A check that returns a Permanent error ends it.
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
		var perm *permanentError
		if errors.As(err, &perm) {
			return fmt.Errorf("wait for %s: gave up after %s and %d attempts: %w",
				p, time.Since(start).Round(time.Millisecond), attempt, perm.err)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for %s: gave up after %s and %d attempts (%w); last error: %w",
				p, time.Since(start).Round(time.Millisecond), attempt, ctx.Err(), err)
		case <-t.C:
		case <-opts.Wake:
			t.Stop()
		}
		pause = min(pause*2, opts.Max)
	}
}

// HTTP succeeds when a GET of url answers with status (0: any 2xx).
func HTTP(url string, status int) Probe {
	return Func("http GET "+url, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if (status == 0 && resp.StatusCode/100 == 2) || resp.StatusCode == status {
			return nil
		}
		want := "2xx"
		if status != 0 {
			want = strconv.Itoa(status)
		}
		return fmt.Errorf("status %d, want %s", resp.StatusCode, want)
	})
}

// ExecFunc runs cmd, in a container say, and returns its exit code and
// output: cleanroom.Container.Exec is one.
type ExecFunc func(ctx context.Context, cmd []string) (exitCode int, output string, err error)

// Exec succeeds when run says cmd exited 0 (e.g. pg_isready). An exec
// through the Podman API costs 150–200 ms and slows the removal of the
// container's pod by seconds: prefer a network probe for repeated checks.
func Exec(run ExecFunc, cmd ...string) Probe {
	return Func(fmt.Sprintf("exec %q", strings.Join(cmd, " ")), func(ctx context.Context) error {
		code, out, err := run(ctx, cmd)
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("exit code %d: %s", code, strings.TrimSpace(out))
		}
		return nil
	})
}

// LogsFunc returns the lines a container wrote so far:
// cleanroom.Container.Logs is one.
type LogsFunc func(ctx context.Context) ([]string, error)

// LogLine succeeds once the output holds a line containing substr at least
// times times (Postgres images log "ready to accept connections" twice: the
// init server, then the real one).
func LogLine(logs LogsFunc, substr string, times int) Probe {
	if times < 1 {
		times = 1
	}
	return Func(fmt.Sprintf("log line %q ×%d", substr, times), func(ctx context.Context) error {
		lines, err := logs(ctx)
		if err != nil {
			return err
		}
		n := 0
		for _, l := range lines {
			if strings.Contains(l, substr) {
				n++
			}
		}
		if n < times {
			return fmt.Errorf("seen %d of %d times", n, times)
		}
		return nil
	})
}

// MariaDB succeeds when the MariaDB (or MySQL) server that dsn names (the
// go-sql-driver/mysql form, user:password@tcp(host:port)/db) lets its user
// log in to the database and answers SELECT 1. Each check opens and closes
// one connection (≈ 5 ms with password authentication).
func MariaDB(dsn string) Probe {
	name := "mariadb SELECT 1"
	cfg, err := mysql.ParseDSN(dsn)
	if err == nil {
		name = "mariadb SELECT 1 at " + cfg.Addr
		// The driver logs every broken handshake, and a server that is
		// starting breaks many; the check's error says what went wrong.
		cfg.Logger = &mysql.NopLogger{}
	}
	return Func(name, func(ctx context.Context) error {
		if err != nil {
			return err
		}
		conn, err := mysql.NewConnector(cfg)
		if err != nil {
			return err
		}
		db := sql.OpenDB(conn)
		defer db.Close()
		db.SetMaxIdleConns(0)
		var one int
		return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
	})
}
