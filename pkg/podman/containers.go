package podman

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containers/podman/v5/libpod/define"
)

// ContainerSpec describes a container to create.
type ContainerSpec struct {
	Name  string // required; unique on the engine (pods and containers share one name space)
	Image string // required; must be present (see ImageExists, Pull)
	// Pod to join; its network namespace and published ports are shared.
	// Default "": a container of its own, with no published ports.
	Pod        string
	Env        map[string]string // environment variables, name → value, on top of the image's
	Entrypoint []string          // default: the image's
	Command    []string          // default: the image's
	Labels     map[string]string // LabelManaged is added
	// Tmpfs maps a path in the container to the mount options of a tmpfs
	// there (e.g. "rw,size=512m,mode=1777"; "" for Podman's defaults).
	Tmpfs map[string]string
	User  string // default: the image's
	// Timeout is a run-time limit enforced by conmon, independent of any
	// process of ours: when it passes, the container is killed. It bounds
	// how long an orphan can live. Default 0: no limit. Whole seconds.
	Timeout time.Duration
	// StopTimeout is how long a stop waits after the stop signal before
	// killing. Default: the engine's (10 s).
	StopTimeout time.Duration
	// ImageVolumes says what becomes of the VOLUMEs the image declares:
	// "" (default) an anonymous volume each, removed with the container;
	// "tmpfs" a tmpfs each; "ignore" none, so that what is written there
	// stays in the container's own file system (and a commit keeps it).
	ImageVolumes string
}

type mount struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type"`
	Source      string   `json:"source"`
	Options     []string `json:"options,omitempty"`
}

type containerCreateRequest struct {
	Name        string            `json:"name"`
	Image       string            `json:"image"`
	Pod         string            `json:"pod,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	Entrypoint  []string          `json:"entrypoint,omitempty"`
	Command     []string          `json:"command,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Mounts      []mount           `json:"mounts,omitempty"`
	User        string            `json:"user,omitempty"`
	Timeout     uint              `json:"timeout,omitempty"`
	StopTimeout *uint             `json:"stop_timeout,omitempty"`
	ImageVolume string            `json:"image_volume_mode,omitempty"`
}

// CreateContainer creates (does not start) a container and returns its ID.
// A taken name gives an error matching ErrConflict; a missing image or pod
// one matching ErrNotFound.
func (c *Client) CreateContainer(ctx context.Context, spec ContainerSpec) (string, error) {
	op := "create container " + spec.Name
	if spec.Name == "" || spec.Image == "" {
		return "", fmt.Errorf("create container %q: a name and an image are required", spec.Name)
	}
	req := containerCreateRequest{
		Name: spec.Name, Image: spec.Image, Pod: spec.Pod, Env: spec.Env,
		Entrypoint: spec.Entrypoint, Command: spec.Command, Labels: withManaged(spec.Labels),
		User: spec.User, ImageVolume: spec.ImageVolumes,
	}
	switch spec.ImageVolumes {
	case "", "tmpfs", "ignore":
	default:
		return "", fmt.Errorf("%s: image volumes %q: want \"\", \"tmpfs\" or \"ignore\"", op, spec.ImageVolumes)
	}
	if spec.Timeout > 0 {
		req.Timeout = uint((spec.Timeout + time.Second - 1) / time.Second)
	}
	if spec.StopTimeout > 0 {
		s := uint((spec.StopTimeout + time.Second - 1) / time.Second)
		req.StopTimeout = &s
	}
	paths := make([]string, 0, len(spec.Tmpfs))
	for p := range spec.Tmpfs {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		m := mount{Destination: p, Type: "tmpfs", Source: "tmpfs"}
		if o := spec.Tmpfs[p]; o != "" {
			m.Options = strings.Split(o, ",")
		}
		req.Mounts = append(req.Mounts, m)
	}
	var out idResponse
	if err := c.call(ctx, op, request{method: http.MethodPost, path: "/containers/create", body: req}, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}

// StartContainer starts a created or stopped container. Starting a running
// container is not an error.
func (c *Client) StartContainer(ctx context.Context, nameOrID string) error {
	return c.call(ctx, "start container "+nameOrID, request{method: http.MethodPost, path: "/containers/%s/start", args: []string{nameOrID}}, nil)
}

// StopContainer stops a container, killing it after timeout (0: the
// container's stop timeout). Stopping a stopped container is not an error.
func (c *Client) StopContainer(ctx context.Context, nameOrID string, timeout time.Duration) error {
	q := url.Values{}
	if timeout > 0 {
		q.Set("timeout", strconv.Itoa(int((timeout+time.Second-1)/time.Second)))
	}
	return c.call(ctx, "stop container "+nameOrID, request{method: http.MethodPost, path: "/containers/%s/stop", args: []string{nameOrID}, query: q}, nil)
}

// RemoveContainer removes a container, killing it first if it runs, with
// its anonymous volumes. A missing container gives ErrNotFound.
func (c *Client) RemoveContainer(ctx context.Context, nameOrID string) error {
	// The libpod API of Podman 4 reads "volumes" for the anonymous
	// volumes; later versions read "v". Each ignores the other.
	q := url.Values{"force": {"true"}, "v": {"true"}, "volumes": {"true"}}
	return c.call(ctx, "remove container "+nameOrID, request{method: http.MethodDelete, path: "/containers/%s", args: []string{nameOrID}, query: q}, nil)
}

// ContainerInfo is what inspecting a container tells.
type ContainerInfo struct {
	ID          string            // container ID (64 hex digits)
	Name        string            // container name
	Image       string            // the image name it was created from
	ImageDigest string            // digest of the image, "sha256:…"
	Pod         string            // pod ID, "" when none
	Created     time.Time         // when the container was created
	Labels      map[string]string // the container's labels
	State       ContainerState    // whether it runs, and how it ended
	// Entrypoint and Command are what the container runs (the image's,
	// unless the create said otherwise).
	Entrypoint []string
	Command    []string // see Entrypoint
	// Timeout is the container's run-time limit (0: none).
	Timeout time.Duration
}

// ContainerState is a container's run state.
type ContainerState struct {
	Status     string    // "created", "running", "exited", …
	Running    bool      // whether its process runs
	ExitCode   int       // exit code of its last run
	OOMKilled  bool      // whether the kernel's OOM killer killed it
	StartedAt  time.Time // when it last started; zero if never
	FinishedAt time.Time // when it last stopped; zero if never
}

// InspectContainer returns the container's state. A missing container gives
// an error matching ErrNotFound.
func (c *Client) InspectContainer(ctx context.Context, nameOrID string) (*ContainerInfo, error) {
	var d define.InspectContainerData
	if err := c.call(ctx, "inspect container "+nameOrID, request{method: http.MethodGet, path: "/containers/%s/json", args: []string{nameOrID}}, &d); err != nil {
		return nil, err
	}
	info := &ContainerInfo{ID: d.ID, Name: d.Name, Image: d.ImageName, ImageDigest: d.ImageDigest, Pod: d.Pod, Created: d.Created}
	if d.Config != nil {
		info.Labels = d.Config.Labels
		info.Entrypoint = d.Config.Entrypoint // a list on Podman 5, a string on 4: the type reads both
		info.Command = d.Config.Cmd
		info.Timeout = time.Duration(d.Config.Timeout) * time.Second
	}
	if s := d.State; s != nil {
		info.State = ContainerState{Status: s.Status, Running: s.Running, ExitCode: int(s.ExitCode), OOMKilled: s.OOMKilled, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt}
	}
	return info, nil
}

// ContainerSummary is one row of ListContainers.
type ContainerSummary struct {
	ID      string            `json:"Id"`      // container ID (64 hex digits)
	Names   []string          `json:"Names"`   // container name (Podman gives one)
	Image   string            `json:"Image"`   // the image name it was created from
	State   string            `json:"State"`   // "created", "running", "exited", …
	Labels  map[string]string `json:"Labels"`  // the container's labels
	Pod     string            `json:"Pod"`     // pod ID, "" when none
	PodName string            `json:"PodName"` // pod name, "" when none
	Created time.Time         `json:"Created"` // when the container was created
	IsInfra bool              `json:"IsInfra"` // whether it is a pod's infra container
}

// ListContainers lists all containers (running or not) carrying all the
// given labels (a value of "" matches any value of that key).
func (c *Client) ListContainers(ctx context.Context, labels map[string]string) ([]ContainerSummary, error) {
	q := labelFilters(labels)
	q.Set("all", "true")
	var out []ContainerSummary
	err := c.call(ctx, "list containers", request{method: http.MethodGet, path: "/containers/json", query: q}, &out)
	return out, err
}

// ExecResult is the outcome of a command run in a container.
type ExecResult struct {
	ExitCode int    // the command's exit code
	Stdout   []byte // what it wrote to standard output
	Stderr   []byte // what it wrote to standard error
}

// Exec runs cmd in a running container and waits for it. A non-zero exit
// code is not an error; a container that does not run is (ErrConflict).
//
// Each exec through the API keeps a conmon process alive for a few minutes,
// which makes removing the container's pod seconds slower: keep execs off
// hot paths and probe over the network instead.
func (c *Client) Exec(ctx context.Context, nameOrID string, cmd []string) (ExecResult, error) {
	op := fmt.Sprintf("exec %q in %s", strings.Join(cmd, " "), nameOrID)
	var created idResponse
	body := map[string]any{"AttachStdout": true, "AttachStderr": true, "Cmd": cmd}
	if err := c.call(ctx, op, request{method: http.MethodPost, path: "/containers/%s/exec", args: []string{nameOrID}, body: body}, &created); err != nil {
		if strings.Contains(err.Error(), "can only create exec sessions on running containers") {
			return ExecResult{}, fmt.Errorf("%w: %w", ErrConflict, err)
		}
		return ExecResult{}, err
	}
	resp, err := c.do(ctx, op, request{method: http.MethodPost, path: "/exec/%s/start", args: []string{created.ID},
		body: map[string]any{"Detach": false, "Tty": false}})
	if err != nil {
		return ExecResult{}, err
	}
	var stdout, stderr bytes.Buffer
	err = demux(resp.Body, &stdout, &stderr)
	resp.Body.Close()
	if err != nil {
		return ExecResult{}, fmt.Errorf("%s: read output: %w", op, err)
	}
	var state struct {
		ExitCode int  `json:"ExitCode"`
		Running  bool `json:"Running"`
	}
	// The session's state can trail the end of its output briefly.
	for i := 0; ; i++ {
		if err := c.call(ctx, op, request{method: http.MethodGet, path: "/exec/%s/json", args: []string{created.ID}}, &state); err != nil {
			return ExecResult{}, err
		}
		if !state.Running || i == 50 {
			break
		}
		select {
		case <-ctx.Done():
			return ExecResult{}, fmt.Errorf("%s: %w", op, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return ExecResult{ExitCode: state.ExitCode, Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}, nil
}

// Logs returns the last tail lines (0: all) of the container's output,
// stdout and stderr interleaved as written.
func (c *Client) Logs(ctx context.Context, nameOrID string, tail int) ([]string, error) {
	op := "logs of " + nameOrID
	q := url.Values{"stdout": {"true"}, "stderr": {"true"}}
	if tail > 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	resp, err := c.do(ctx, op, request{method: http.MethodGet, path: "/containers/%s/logs", args: []string{nameOrID}, query: q})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var all bytes.Buffer
	if err := demux(resp.Body, &all, &all); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var lines []string
	sc := bufio.NewScanner(&all)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if tail > 0 && len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	return lines, sc.Err()
}

// FollowLogs calls each with every line of the container's output (stdout
// and stderr, its log so far first) as it is written, until the container
// stops (then it returns nil) or ctx ends. Readiness waits use it to probe
// a server the moment it logs something, instead of on a timer.
func (c *Client) FollowLogs(ctx context.Context, nameOrID string, each func(line string)) error {
	op := "follow logs of " + nameOrID
	q := url.Values{"stdout": {"true"}, "stderr": {"true"}, "follow": {"true"}}
	resp, err := c.do(ctx, op, request{method: http.MethodGet, path: "/containers/%s/logs", args: []string{nameOrID}, query: q})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	w := &lineWriter{each: each}
	err = demux(resp.Body, w, w)
	w.flush()
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// lineWriter hands complete lines to each.
type lineWriter struct {
	each func(string)
	buf  []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.each(strings.TrimSuffix(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
}

// flush hands on a last line without a newline.
func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.each(string(w.buf))
		w.buf = nil
	}
}

// demux splits the API's multiplexed stream (8-byte frame headers: stream
// number, three zero bytes, big-endian length) into stdout and stderr.
func demux(r io.Reader, stdout, stderr io.Writer) error {
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err == io.EOF {
				return nil
			}
			return fmt.Errorf("read frame header: %w", err)
		}
		n := int64(hdr[4])<<24 | int64(hdr[5])<<16 | int64(hdr[6])<<8 | int64(hdr[7])
		var w io.Writer
		switch hdr[0] {
		case 0, 1:
			w = stdout
		case 2:
			w = stderr
		case 3:
			msg, _ := io.ReadAll(io.LimitReader(r, n))
			return fmt.Errorf("service: %s", strings.TrimSpace(string(msg)))
		default:
			return fmt.Errorf("unexpected stream %d in multiplexed output", hdr[0])
		}
		if _, err := io.CopyN(w, r, n); err != nil {
			return fmt.Errorf("read frame: %w", err)
		}
	}
}

// ContainerStats is one running container's resource use.
type ContainerStats struct {
	ContainerID string  `json:"ContainerID"` // container ID (64 hex digits)
	Name        string  `json:"Name"`        // container name
	MemUsage    int64   `json:"MemUsage"`    // bytes
	CPU         float64 `json:"CPU"`         // percent
}

// Stats returns the resource use of every running container.
func (c *Client) Stats(ctx context.Context) ([]ContainerStats, error) {
	var out struct {
		Stats []ContainerStats `json:"Stats"`
	}
	q := url.Values{"stream": {"false"}, "all": {"true"}}
	err := c.call(ctx, "container stats", request{method: http.MethodGet, path: "/containers/stats", query: q}, &out)
	return out.Stats, err
}
