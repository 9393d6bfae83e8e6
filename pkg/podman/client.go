package podman

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containers/common/pkg/config"
	"github.com/containers/podman/v5/pkg/bindings"
)

// Source says where an endpoint's address came from.
type Source string

// Where an address can come from, in the order Connect looks.
const (
	SourceExplicit       Source = "explicit URI"
	SourceEnv            Source = "CONTAINER_HOST"
	SourceContainersConf Source = "containers.conf default connection"
	SourceRootless       Source = "rootless socket"
	SourceRootful        Source = "rootful socket"
)

// RootfulSocket is the rootful service's socket path.
const RootfulSocket = "/run/podman/podman.sock"

// Endpoint is one address of a Podman API service.
type Endpoint struct {
	URI      string // unix:///…, tcp://host:port or ssh://user@host[:port]/path
	Identity string // ssh private key file; only for ssh URIs
	Source   Source // where URI came from (an option, CONTAINER_HOST, a default socket…)
}

// Options choose the service. The zero value looks in the default order.
type Options struct {
	// URI of the service. Default: CONTAINER_HOST, then the default
	// connection of containers.conf (podman system connection), then the
	// rootless socket $XDG_RUNTIME_DIR/podman/podman.sock (non-root users),
	// then /run/podman/podman.sock.
	URI string
	// Identity is the ssh key for ssh URIs. Default: CONTAINER_SSHKEY, or the
	// identity of the containers.conf connection.
	Identity string
}

// Endpoints lists, in order, the addresses Connect would try for opts. An
// address chosen by the user (opts.URI, CONTAINER_HOST, a containers.conf
// default connection) is the only one; otherwise the local sockets follow.
func Endpoints(opts Options) []Endpoint {
	identity := opts.Identity
	if identity == "" {
		identity = os.Getenv("CONTAINER_SSHKEY")
	}
	if opts.URI != "" {
		return []Endpoint{{URI: opts.URI, Identity: identity, Source: SourceExplicit}}
	}
	if v := os.Getenv("CONTAINER_HOST"); v != "" {
		return []Endpoint{{URI: v, Identity: identity, Source: SourceEnv}}
	}
	if cfg, err := config.New(nil); err == nil {
		if c, err := cfg.GetConnection("", true); err == nil && c.URI != "" {
			if identity == "" {
				identity = c.Identity
			}
			return []Endpoint{{URI: c.URI, Identity: identity, Source: SourceContainersConf}}
		}
	}
	var eps []Endpoint
	if os.Geteuid() != 0 {
		dir := os.Getenv("XDG_RUNTIME_DIR")
		if dir == "" {
			dir = fmt.Sprintf("/run/user/%d", os.Geteuid())
		}
		eps = append(eps, Endpoint{URI: "unix://" + filepath.Join(dir, "podman", "podman.sock"), Source: SourceRootless})
	}
	return append(eps, Endpoint{URI: "unix://" + RootfulSocket, Source: SourceRootful})
}

// Client talks to one Podman API service. It is safe for concurrent use.
// It holds idle HTTP connections; Close releases them.
type Client struct {
	conn     *bindings.Connection
	endpoint Endpoint
	version  string // the service's API version, used in every request path
}

// Connect finds the service (see Options) and checks that it answers.
// When none does, the error matches ErrNoService and says how to start one.
func Connect(ctx context.Context, opts Options) (*Client, error) {
	eps := Endpoints(opts)
	var lastErr error
	for _, ep := range eps {
		c, err := dial(ctx, ep)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect to podman at %s: %w", ep.URI, ctx.Err())
		}
		var bad *badEndpointError
		if errors.As(err, &bad) {
			return nil, err
		}
		lastErr = err
	}
	return nil, &NoServiceError{Tried: eps, Err: lastErr}
}

type badEndpointError struct{ err error }

// Error says why the address cannot be used (not a URI, or an unsupported
// scheme) and which forms are accepted.
func (e *badEndpointError) Error() string { return e.err.Error() }

// Unwrap returns the error that describes the bad address.
func (e *badEndpointError) Unwrap() error { return e.err }

func dial(ctx context.Context, ep Endpoint) (*Client, error) {
	u, err := url.Parse(ep.URI)
	if err != nil || u.Scheme == "" {
		return nil, &badEndpointError{fmt.Errorf("podman URI %q (%s) is not a URI: want unix:///path, tcp://host:port or ssh://user@host[:port]/path", ep.URI, ep.Source)}
	}
	switch u.Scheme {
	case "unix", "tcp", "ssh":
	default:
		return nil, &badEndpointError{fmt.Errorf("podman URI %q (%s): scheme %q is not supported; use unix, tcp or ssh", ep.URI, ep.Source, u.Scheme)}
	}
	if u.Scheme == "unix" {
		// Fail fast and clearly on a missing socket, without the bindings'
		// three retries.
		path := u.Path
		if path == "" {
			path = u.Host + u.Path
		}
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("dial unix %s: %w", path, err)
		}
	}
	bctx, err := bindings.NewConnectionWithIdentity(ctx, ep.URI, ep.Identity, false)
	if err != nil {
		return nil, err
	}
	conn, err := bindings.GetClient(bctx)
	if err != nil {
		return nil, err
	}
	v := bindings.ServiceVersion(bctx)
	return &Client{
		conn:     conn,
		endpoint: ep,
		version:  fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch),
	}, nil
}

// Endpoint is the address this client talks to, and where it came from.
func (c *Client) Endpoint() Endpoint { return c.endpoint }

// APIVersion is the libpod API version of the service, e.g. "4.3.1".
func (c *Client) APIVersion() string { return c.version }

// Close releases idle connections. The client must not be used afterwards.
func (c *Client) Close() error {
	c.conn.Client.CloseIdleConnections()
	return nil
}

// request is one libpod API call.
type request struct {
	method string
	path   string // with %s for path values, e.g. "/pods/%s/json"
	args   []string
	query  url.Values
	body   any // marshalled as JSON when not nil
}

// do sends the request and returns the response when its status is below
// 400; otherwise it returns an *APIError named after op. The caller closes
// the body.
func (c *Client) do(ctx context.Context, op string, r request) (*http.Response, error) {
	var body io.Reader
	headers := http.Header{"API-Version": {c.version}}
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, fmt.Errorf("%s: encode request: %w", op, err)
		}
		body = bytes.NewReader(b)
		headers.Set("Content-Type", "application/json")
	}
	resp, err := c.conn.DoRequest(ctx, body, r.method, r.path, r.query, headers, r.args...)
	if err != nil {
		return nil, c.transportError(ctx, op, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, readAPIError(op, resp.Response)
	}
	return resp.Response, nil
}

// call sends the request and decodes a JSON answer into out (when not nil).
func (c *Client) call(ctx context.Context, op string, r request, out any) error {
	resp, err := c.do(ctx, op, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s: decode answer: %w", op, err)
	}
	return nil
}

// transportError turns a failed round trip into an error: a refused or
// missing socket becomes a NoServiceError with advice.
func (c *Client) transportError(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return fmt.Errorf("%s: %w", op, &NoServiceError{Tried: []Endpoint{c.endpoint}, Err: err})
	}
	return fmt.Errorf("%s: %w", op, err)
}

func readAPIError(op string, resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var model struct {
		Cause   string `json:"cause"`
		Message string `json:"message"`
	}
	msg := strings.TrimSpace(string(data))
	if json.Unmarshal(data, &model) == nil && model.Message != "" {
		msg = model.Message
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &APIError{Op: op, StatusCode: resp.StatusCode, Message: msg, Cause: model.Cause}
}

// compat sends a request to the Docker-compatible API on the same socket
// (used where it reports more than libpod's endpoint, e.g. pull progress).
func (c *Client) compat(ctx context.Context, op, method, path string, query url.Values) (*http.Response, error) {
	base := "http://d"
	if c.conn.URI.Scheme == "tcp" {
		base = "http://" + c.conn.URI.Host + c.conn.URI.Path
	}
	u := base + "/v1.41" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	resp, err := c.conn.Client.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, op, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, readAPIError(op, resp)
	}
	return resp, nil
}

// Version is what the service says of itself.
type Version struct {
	Version    string `json:"Version"`    // Podman version, e.g. "4.3.1"
	APIVersion string `json:"APIVersion"` // Docker-compatible API version, e.g. "1.41"
	GoVersion  string `json:"GoVersion"`  // Go version Podman was built with
}

// Version asks the service for its version.
func (c *Client) Version(ctx context.Context) (Version, error) {
	var v Version
	err := c.call(ctx, "podman version", request{method: http.MethodGet, path: "/version"}, &v)
	return v, err
}

// Ping checks that the service still answers.
func (c *Client) Ping(ctx context.Context) error {
	return c.call(ctx, "ping podman", request{method: http.MethodGet, path: "/_ping"}, nil)
}

// Event is one entry of the engine's event log.
type Event struct {
	Type   string `json:"Type"`     // "pod", "container", "image", …
	Action string `json:"Action"`   // "create", "start", "remove", …
	ID     string `json:"id"`       // ID of the object the event is about
	Time   int64  `json:"timeNano"` // when it happened, in Unix nanoseconds
	// Actor is the object the event is about: its ID and attributes.
	Actor struct {
		ID         string            `json:"ID"`
		Attributes map[string]string `json:"Attributes"` // name, podId, and a container's labels
	} `json:"Actor"`
}

// Name is the object's name as the event reports it.
func (e Event) Name() string { return e.Actor.Attributes["name"] }

// Events returns the engine's events between since and until (the zero
// until: now), oldest first.
func (c *Client) Events(ctx context.Context, since, until time.Time) ([]Event, error) {
	q := url.Values{"stream": {"false"}, "since": {strconv.FormatInt(since.Unix(), 10)}}
	if !until.IsZero() {
		q.Set("until", strconv.FormatInt(until.Unix()+1, 10))
	}
	resp, err := c.do(ctx, "read events", request{method: http.MethodGet, path: "/events", query: q})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []Event
	dec := json.NewDecoder(resp.Body)
	for {
		var e Event
		if err := dec.Decode(&e); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("read events: %w", err)
		}
		if e.Time >= since.UnixNano() && (until.IsZero() || e.Time <= until.UnixNano()) {
			out = append(out, e)
		}
	}
	return out, nil
}

// Info is what the service says of its host.
type Info struct {
	// Host describes the machine the service runs on: architecture,
	// cgroups, OCI runtime, rootlessness, networking, distribution and kernel.
	Host struct {
		Arch          string `json:"arch"`
		CgroupVersion string `json:"cgroupVersion"`
		CgroupManager string `json:"cgroupManager"`
		OCIRuntime    struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"ociRuntime"`
		Security struct {
			Rootless bool `json:"rootless"`
		} `json:"security"`
		EventLogger string `json:"eventLogger"`
		// NetworkBackend is "cni" (Podman 4 may use it) or "netavark"
		// (Podman 5 has no other).
		NetworkBackend string `json:"networkBackend"`
		// RootlessNetworkCmd is what rootless networking uses: "pasta"
		// (Podman 5's default) or "slirp4netns"; "" from Podman 4, which
		// uses slirp4netns.
		RootlessNetworkCmd string `json:"rootlessNetworkCmd"`
		Distribution       struct {
			Distribution string `json:"distribution"` // e.g. "fedora", "debian"
			Version      string `json:"version"`
			Codename     string `json:"codename"`
		} `json:"distribution"`
		Kernel string `json:"kernel"`
	} `json:"host"`
	// Store is the engine's storage: its graph driver and root directory.
	Store struct {
		GraphDriverName string `json:"graphDriverName"`
		GraphRoot       string `json:"graphRoot"`
	} `json:"store"`
	// Version is the service's Podman and API version.
	Version struct {
		Version    string `json:"Version"`
		APIVersion string `json:"APIVersion"`
	} `json:"version"`
}

// Info asks the service about its host: runtime, cgroups, storage.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var i Info
	err := c.call(ctx, "podman info", request{method: http.MethodGet, path: "/info"}, &i)
	return i, err
}
