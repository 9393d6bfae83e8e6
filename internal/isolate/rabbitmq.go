package isolate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// RabbitMQ isolation is by virtual host: a test gets a vhost of its own
// ("t_orders_1a2b3c4d"), made and deleted through the management HTTP
// API, where its queues, exchanges and bindings cannot meet another
// test's. While it runs, its process's admin connection (AMQP, to the
// default vhost) holds an exclusive queue named HeldQueue(vhost): RabbitMQ
// deletes an exclusive queue when its connection closes, so the hold goes
// with the process even when it is killed, and a suite-wide reset tells
// the vhosts of running tests from leftovers by asking whether that queue
// exists.

// heldQueuePrefix starts the names of the queues that hold vhosts.
const heldQueuePrefix = "cleanroom.held."

// HeldQueue is the exclusive queue, in the default vhost, that holds vhost.
func HeldQueue(vhost string) string { return heldQueuePrefix + vhost }

// RabbitMQVhostName makes a vhost name for test: ObjectName's form.
func RabbitMQVhostName(test string) string { return ObjectName("t_", test) }

// IsTestVhost says whether a vhost has the form RabbitMQVhostName makes.
func IsTestVhost(name string) bool { return prefixRE.MatchString(name) }

// VhostURL is amqpURL (amqp://user:password@host:port/…) with its vhost
// replaced by vhost.
func VhostURL(amqpURL, vhost string) (string, error) {
	u, err := url.Parse(amqpURL)
	if err != nil {
		return "", fmt.Errorf("isolation: parse amqp URL: %w", err)
	}
	u.Path = "/" + vhost
	u.RawPath = "/" + url.PathEscape(vhost)
	return u.String(), nil
}

// RabbitMQAdmin reaches one RabbitMQ server: its management HTTP API for
// vhosts and permissions, an AMQP connection to the default vhost for
// holds. One per server and process (RabbitMQAdminFor); safe for
// concurrent use.
type RabbitMQAdmin struct {
	amqpURL    string
	management string // http://host:port
	user, pass string
	client     *http.Client

	mu   sync.Mutex // guards conn and ch; serialises the channel's calls
	conn *amqp.Connection
	ch   *amqp.Channel
}

var rabbitAdmins struct {
	mu     sync.Mutex
	admins map[string]*RabbitMQAdmin
}

// RabbitMQAdminFor returns the process's admin of the server at amqpURL
// (whose user is also the management API's) with its management API at
// managementURL. Its AMQP connection opens on first Hold and is opened
// again when it was lost.
func RabbitMQAdminFor(amqpURL, managementURL string) (*RabbitMQAdmin, error) {
	rabbitAdmins.mu.Lock()
	defer rabbitAdmins.mu.Unlock()
	key := amqpURL + " " + managementURL
	if a := rabbitAdmins.admins[key]; a != nil {
		return a, nil
	}
	a, err := NewRabbitMQAdmin(amqpURL, managementURL)
	if err != nil {
		return nil, err
	}
	if rabbitAdmins.admins == nil {
		rabbitAdmins.admins = map[string]*RabbitMQAdmin{}
	}
	rabbitAdmins.admins[key] = a
	return a, nil
}

// NewRabbitMQAdmin is an admin of its own, for a caller that closes it.
func NewRabbitMQAdmin(amqpURL, managementURL string) (*RabbitMQAdmin, error) {
	u, err := url.Parse(amqpURL)
	if err != nil {
		return nil, fmt.Errorf("isolation: parse amqp URL: %w", err)
	}
	if managementURL == "" {
		return nil, errors.New("isolation: rabbitmq: no management URL (is port 15672 published and the management plugin on?)")
	}
	a := &RabbitMQAdmin{
		amqpURL:    amqpURL,
		management: strings.TrimSuffix(managementURL, "/"),
		user:       u.User.Username(),
		client:     &http.Client{Timeout: 30 * time.Second},
	}
	a.pass, _ = u.User.Password()
	return a, nil
}

// Close closes the admin's AMQP connection, releasing its holds.
func (a *RabbitMQAdmin) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn == nil {
		return nil
	}
	err := a.conn.Close()
	a.conn, a.ch = nil, nil
	if errors.Is(err, amqp.ErrClosed) {
		err = nil
	}
	return err
}

// channel returns the admin's channel, (re)opening what was lost; a.mu held.
func (a *RabbitMQAdmin) channel() (*amqp.Channel, error) {
	if a.conn == nil || a.conn.IsClosed() {
		cfg := amqp.Config{Properties: amqp.Table{"connection_name": "cleanroom isolation"}, Dial: amqp.DefaultDial(10 * time.Second)}
		conn, err := amqp.DialConfig(a.amqpURL, cfg)
		if err != nil {
			return nil, fmt.Errorf("connect to rabbitmq at %s: %w", Redact(a.amqpURL), err)
		}
		a.conn, a.ch = conn, nil
	}
	if a.ch == nil || a.ch.IsClosed() {
		ch, err := a.conn.Channel()
		if err != nil {
			return nil, fmt.Errorf("open a channel on rabbitmq at %s: %w", Redact(a.amqpURL), err)
		}
		a.ch = ch
	}
	return a.ch, nil
}

// Hold declares HeldQueue(vhost), exclusive to the admin's connection,
// until the returned function is called.
func (a *RabbitMQAdmin) Hold(vhost string) (release func(), err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch, err := a.channel()
	if err != nil {
		return nil, fmt.Errorf("isolation: hold rabbitmq vhost %s: %w", vhost, err)
	}
	q := HeldQueue(vhost)
	if _, err := ch.QueueDeclare(q, false, false, true, false, nil); err != nil {
		return nil, fmt.Errorf("isolation: hold rabbitmq vhost %s: %w", vhost, err)
	}
	conn := a.conn
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.conn != conn {
			return // that connection, and its hold, are gone
		}
		if ch, err := a.channel(); err == nil {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
	}, nil
}

// Held says whether a running test holds vhost: its HeldQueue exists.
func (a *RabbitMQAdmin) Held(ctx context.Context, vhost string) (bool, error) {
	code, err := a.do(ctx, http.MethodGet, "/api/queues/"+url.PathEscape("/")+"/"+url.PathEscape(HeldQueue(vhost)), nil, nil)
	switch {
	case err != nil:
		return false, fmt.Errorf("isolation: ask who holds rabbitmq vhost %s: %w", vhost, err)
	case code == http.StatusNotFound:
		return false, nil
	default:
		return true, nil
	}
}

// CreateVhost makes vhost and gives the admin's user every permission on it.
func (a *RabbitMQAdmin) CreateVhost(ctx context.Context, vhost string) error {
	p := url.PathEscape(vhost)
	if _, err := a.do(ctx, http.MethodPut, "/api/vhosts/"+p, map[string]any{"description": "cleanroom test vhost"}, nil); err != nil {
		return fmt.Errorf("isolation: create rabbitmq vhost %s: %w", vhost, err)
	}
	perm := map[string]string{"configure": ".*", "write": ".*", "read": ".*"}
	if _, err := a.do(ctx, http.MethodPut, "/api/permissions/"+p+"/"+url.PathEscape(a.user), perm, nil); err != nil {
		_ = a.DeleteVhost(ctx, vhost)
		return fmt.Errorf("isolation: grant %s rabbitmq vhost %s: %w", a.user, vhost, err)
	}
	return nil
}

// DeleteVhost deletes vhost and everything in it; a vhost that is not
// there is no error.
func (a *RabbitMQAdmin) DeleteVhost(ctx context.Context, vhost string) error {
	code, err := a.do(ctx, http.MethodDelete, "/api/vhosts/"+url.PathEscape(vhost), nil, nil)
	if err != nil && code != http.StatusNotFound {
		return fmt.Errorf("isolation: delete rabbitmq vhost %s: %w", vhost, err)
	}
	return nil
}

// Vhosts lists the server's vhosts.
func (a *RabbitMQAdmin) Vhosts(ctx context.Context) ([]string, error) {
	var vs []struct{ Name string }
	if _, err := a.do(ctx, http.MethodGet, "/api/vhosts?columns=name", nil, &vs); err != nil {
		return nil, fmt.Errorf("isolation: list rabbitmq vhosts: %w", err)
	}
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out, nil
}

// Queues lists the queues of vhost.
func (a *RabbitMQAdmin) Queues(ctx context.Context, vhost string) ([]RabbitMQQueue, error) {
	var qs []RabbitMQQueue
	if _, err := a.do(ctx, http.MethodGet, "/api/queues/"+url.PathEscape(vhost)+"?columns=name,exclusive", nil, &qs); err != nil {
		return nil, fmt.Errorf("isolation: list rabbitmq queues of vhost %s: %w", vhost, err)
	}
	return qs, nil
}

// RabbitMQQueue is what Queues reports of a queue.
type RabbitMQQueue struct {
	Name      string `json:"name"`
	Exclusive bool   `json:"exclusive"`
}

// Exchanges lists the exchanges of vhost that a client declared: not the
// default exchange, nor the predeclared "amq.*" ones.
func (a *RabbitMQAdmin) Exchanges(ctx context.Context, vhost string) ([]string, error) {
	var xs []struct{ Name string }
	if _, err := a.do(ctx, http.MethodGet, "/api/exchanges/"+url.PathEscape(vhost)+"?columns=name", nil, &xs); err != nil {
		return nil, fmt.Errorf("isolation: list rabbitmq exchanges of vhost %s: %w", vhost, err)
	}
	var out []string
	for _, x := range xs {
		if x.Name != "" && !strings.HasPrefix(x.Name, "amq.") {
			out = append(out, x.Name)
		}
	}
	return out, nil
}

// RabbitMQReset is what a suite-wide reset deleted.
type RabbitMQReset struct {
	Vhosts    []string // test vhosts no running test held
	Queues    []string // queues of the default vhost
	Exchanges []string // exchanges of the default vhost
}

// ResetRabbitMQ deletes every test vhost (RabbitMQVhostName's form) that
// no running test holds, and the queues (but exclusive ones, which live
// and die with a connection of a running process) and client-declared
// exchanges of the default vhost "/".
func (a *RabbitMQAdmin) ResetRabbitMQ(ctx context.Context) (RabbitMQReset, error) {
	var r RabbitMQReset
	var errs []error
	vhosts, err := a.Vhosts(ctx)
	if err != nil {
		return r, err
	}
	for _, v := range vhosts {
		if !IsTestVhost(v) {
			continue
		}
		held, err := a.Held(ctx, v)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if held {
			continue
		}
		if err := a.DeleteVhost(ctx, v); err != nil {
			errs = append(errs, err)
			continue
		}
		r.Vhosts = append(r.Vhosts, v)
	}
	qs, err := a.Queues(ctx, "/")
	if err != nil {
		errs = append(errs, err)
	}
	for _, q := range qs {
		if q.Exclusive {
			continue
		}
		code, err := a.do(ctx, http.MethodDelete, "/api/queues/"+url.PathEscape("/")+"/"+url.PathEscape(q.Name), nil, nil)
		if err != nil && code != http.StatusNotFound {
			errs = append(errs, fmt.Errorf("isolation: delete rabbitmq queue %s: %w", q.Name, err))
			continue
		}
		r.Queues = append(r.Queues, q.Name)
	}
	xs, err := a.Exchanges(ctx, "/")
	if err != nil {
		errs = append(errs, err)
	}
	for _, x := range xs {
		code, err := a.do(ctx, http.MethodDelete, "/api/exchanges/"+url.PathEscape("/")+"/"+url.PathEscape(x), nil, nil)
		if err != nil && code != http.StatusNotFound {
			errs = append(errs, fmt.Errorf("isolation: delete rabbitmq exchange %s: %w", x, err))
			continue
		}
		r.Exchanges = append(r.Exchanges, x)
	}
	return r, errors.Join(errs...)
}

// do makes a management API request (path already escaped), sends body as
// JSON and decodes the answer into out. A status of 300 or more is an
// error that carries the server's reason; the status is returned with it.
func (a *RabbitMQAdmin) do(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.management+path, rd)
	if err != nil {
		return 0, err
	}
	req.SetBasicAuth(a.user, a.pass)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		if resp.StatusCode == http.StatusNotFound && method == http.MethodGet {
			return resp.StatusCode, nil
		}
		reason := strings.TrimSpace(string(b))
		var e struct{ Reason string }
		if json.Unmarshal(b, &e) == nil && e.Reason != "" {
			reason = e.Reason
		}
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, reason)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}
