package cleanroom

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// Version is the library version, written into the io.cleanroom.version
// label of every object it creates.
const Version = "0.1.0-dev"

// Labels on the pods and containers an Environment creates, besides
// podman.LabelManaged. They mirror the registry, so that another process
// or the cleanroom CLI can find the objects again.
const (
	LabelSuite      = "io.cleanroom.suite"       // suite key
	LabelRun        = "io.cleanroom.run"         // the creating process's run ID
	LabelPID        = "io.cleanroom.pid"         // the creating process's PID
	LabelService    = "io.cleanroom.service"     // service name (containers)
	LabelConfigHash = "io.cleanroom.config-hash" // hash of the service definition (containers) or of the suite
	LabelCreatedAt  = "io.cleanroom.created-at"  // RFC 3339
	LabelVersion    = "io.cleanroom.version"     // library version
	LabelRole       = "io.cleanroom.role"        // pods: "suite", "service", "per-test", "snapshot"; containers: "service", "snapshot-builder"
	LabelSecret     = "io.cleanroom.secret"      // the services' password (pods)
	LabelHost       = "io.cleanroom.host"        // host name of the creating process (pods)
)

// engine is the part of *podman.Client an Environment uses: the seam where
// unit tests put a fake.
type engine interface {
	CreatePod(ctx context.Context, spec podman.PodSpec) (string, error)
	InspectPod(ctx context.Context, nameOrID string) (*podman.PodInfo, error)
	ListPods(ctx context.Context, labels map[string]string) ([]podman.PodSummary, error)
	StartPod(ctx context.Context, nameOrID string) error
	RemovePod(ctx context.Context, nameOrID string) error
	CreateContainer(ctx context.Context, spec podman.ContainerSpec) (string, error)
	StartContainer(ctx context.Context, nameOrID string) error
	InspectContainer(ctx context.Context, nameOrID string) (*podman.ContainerInfo, error)
	RemoveContainer(ctx context.Context, nameOrID string) error
	Logs(ctx context.Context, nameOrID string, tail int) ([]string, error)
	Exec(ctx context.Context, nameOrID string, cmd []string) (podman.ExecResult, error)
	ImageExists(ctx context.Context, ref string) (bool, error)
	Pull(ctx context.Context, ref string, progress func(podman.PullEvent)) error
	Close() error
}

var _ engine = (*podman.Client)(nil)

// dialEngine connects to Podman; unit tests replace it.
var dialEngine = func(ctx context.Context, uri string) (engine, error) {
	return podman.Connect(ctx, podman.Options{URI: uri})
}

// logTail is how many log lines a start-up failure carries.
const logTail = 50

// Environment owns a suite's service containers: it starts each declared
// service on first use in the suite's pod, reuses it while it is healthy
// and young enough, replaces it otherwise, and removes everything it
// created in Close. All methods are safe for concurrent use.
type Environment struct {
	cfg      Config
	eng      engine
	log      *slog.Logger
	suite    string // suite key (Config.Suite, or a hash of module root, definitions and bind address)
	podName  string // the suite pod's name, the same in every process of the suite
	run      string // this process's run ID
	prefix   string // name prefix of the pods only this process uses
	declared []*entry
	ports    []uint16 // of the suite pod
	endpoint podman.Endpoint
	share    *shared     // nil: this process alone owns its pods (no flock, or unit tests)
	rootless func() bool // the engine runs rootless (asked once, when needed: podman info takes ~0.4 s)
	secret   string      // the services' password in pods this process creates

	snapMu       sync.Mutex
	snapDropped  map[string]bool // services whose snapshot CLEANROOM_REBUILD dropped
	snapBuilding map[string]bool // snapshot images being built

	// Images known to be in the engine's store, and their IDs: looked up
	// once per environment, not at every container start (per-test pods
	// start hundreds; over ssh each lookup is a round trip).
	imagesPresent sync.Map // image → struct{}
	imageIDs      sync.Map // image → ID
	snapWG        sync.WaitGroup

	mu       sync.Mutex
	byName   map[string]*entry
	suitePod *pod
	pods     map[string]bool // pods created and not yet removed
	counter  int             // for per-test pod names
	closed   bool

	closeOnce sync.Once
	closeErr  error

	started, reused, replaced, perTest, adopted, fromSnapshot atomic.Int64

	readyMu sync.Mutex
	ready   map[string]time.Duration // service → wait of its first use

	closersMu sync.Mutex
	closers   []func() // run by Close, before the pods go
}

// onClose registers f to run at Close (e.g. a shared connection pool).
func (e *Environment) onClose(f func()) {
	e.closersMu.Lock()
	defer e.closersMu.Unlock()
	e.closers = append(e.closers, f)
}

type pod struct {
	name, id string
	host     string
	ports    map[uint16]uint16
	secret   string // the password of the services in it (label io.cleanroom.secret)
}

// entry is one registry slot: a service and its current container.
type entry struct {
	svc  *Service
	late bool // added by GetOrCreate: lives in a pod of its own

	mu          sync.Mutex
	cur         *Container
	lastHealthy time.Time
	users       int // tests of this process attached to cur
	inflight    *call
	fallback    error // set once the singleton failed: per-test from then on
	broken      error // the per-test fallback failed too: fail fast
	probe       healthcheck.Probe
	probeOf     *Container // the container probe was made for
}

// healthProbe returns the health probe of c, kept across checks (a
// Postgres probe keeps its connection). Called with ent.mu held.
func (ent *entry) healthProbe(c *Container) healthcheck.Probe {
	if ent.probeOf != c {
		closeProbe(ent.probe)
		ent.probe, ent.probeOf = ent.svc.healthProbe(c), c
	}
	return ent.probe
}

// closeProbe releases what a probe holds (a Postgres connection).
func closeProbe(p healthcheck.Probe) {
	if c, ok := p.(io.Closer); ok {
		_ = c.Close()
	}
}

type call struct {
	done chan struct{}
	c    *Container
	err  error
}

// New validates cfg (with CLEANROOM_* environment variables applied over
// it) and the services, connects to Podman and returns an Environment.
// Nothing is created yet: a service's pod and container start on its first
// use. Close the Environment when done.
func New(ctx context.Context, cfg Config, services ...Service) (*Environment, error) {
	// CLEANROOM_* variables are the operator's word: they win over the
	// program's Config as over cleanroom.toml.
	cfg.Images = maps.Clone(cfg.Images)
	if err := applyEnv(&cfg, os.Environ()); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if eps := podman.Endpoints(podman.Options{URI: cfg.Connection}); len(eps) == 1 {
		if host := remoteHost(eps[0].URI); host != "" && isLoopback(cfg.BindAddress) {
			return nil, fmt.Errorf("cleanroom: the Podman engine runs on %s (%s, %s), but services would publish their ports on its loopback address %s, which this machine cannot reach: "+
				"set bind_address (CLEANROOM_BIND_ADDRESS) to an address of %s this machine can reach, or \"0.0.0.0\" for all of them", host, eps[0].URI, eps[0].Source, cfg.BindAddress, host)
		}
	}
	c, err := dialEngine(ctx, cfg.Connection)
	if err != nil {
		return nil, fmt.Errorf("cleanroom: %w", err)
	}
	e, err := newEnvironment(cfg, c, services)
	if err != nil {
		c.Close()
		return nil, err
	}
	if pc, ok := c.(*podman.Client); ok {
		e.endpoint = pc.Endpoint()
		if e.engineHost() != "" && cfg.Suite == "" {
			// A remote engine may serve several machines whose checkouts sit
			// at the same path: their leases are local, so their suites
			// must not meet.
			e.suite = hash(e.suite + "\x00" + hostname())[:12]
			e.podName = "cleanroom-" + e.suite
			e.prefix = e.podName + "-" + e.run
		}
		e.secret = suiteSecret(e.suite)

		e.rootless = sync.OnceValue(func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			info, err := pc.Info(ctx)
			return err == nil && info.Host.Security.Rootless
		})
		if dir, err := engineLockDir(e.endpoint.URI); err != nil {
			e.log.Warn("cleanroom: test processes cannot share the suite's pod; each keeps its own", "error", err)
		} else {
			e.share = &shared{files: leaseFiles{dir: dir, pod: e.podName}}
		}
	}
	return e, nil
}

func newEnvironment(cfg Config, eng engine, services []Service) (*Environment, error) {
	e := &Environment{
		cfg:    cfg,
		eng:    eng,
		log:    cfg.Logger,
		run:    randomHex(4),
		secret: randomHex(16),
		byName: map[string]*entry{},
		pods:   map[string]bool{},

		snapDropped:  map[string]bool{},
		snapBuilding: map[string]bool{},
	}
	usedPorts := map[uint16]string{}
	h := sha256.New()
	fmt.Fprintln(h, moduleRoot())
	// Ports are published on the bind address when the pod is made: a
	// process wanting them elsewhere needs a pod of its own.
	fmt.Fprintln(h, "bind", cfg.BindAddress)
	for _, s := range services {
		s := s.clone()
		if img := cfg.Images[s.name]; img != "" {
			s.image = img
		}
		if err := s.validate(); err != nil {
			return nil, fmt.Errorf("cleanroom: %w", err)
		}
		if _, dup := e.byName[s.name]; dup {
			return nil, fmt.Errorf("cleanroom: service %q declared twice; give one a different name", s.name)
		}
		for _, p := range s.ports {
			if other, taken := usedPorts[p]; taken {
				return nil, fmt.Errorf("cleanroom: services %s and %s both use port %d; they share the suite pod's network, so give one another port", other, s.name, p)
			}
			usedPorts[p] = s.name
			e.ports = append(e.ports, p)
		}
		ent := &entry{svc: &s}
		e.byName[s.name] = ent
		e.declared = append(e.declared, ent)
		fmt.Fprintln(h, s.definition())
	}
	e.suite = cfg.Suite
	if e.suite == "" {
		e.suite = hex.EncodeToString(h.Sum(nil))[:12]
	}
	e.podName = "cleanroom-" + e.suite
	e.prefix = e.podName + "-" + e.run
	return e, nil
}

// moduleRoot is the directory of the go.mod above the working directory
// (under `go test`, the package's directory), or the working directory.
func moduleRoot() string {
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		if filepath.Dir(dir) == dir {
			return wd
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:16]
}

// Services lists the names of the declared services, in declaration order.
func (e *Environment) Services() []string {
	var out []string
	for _, ent := range e.declared {
		out = append(out, ent.svc.name)
	}
	return out
}

// Get returns the declared service's container, starting it on first use,
// health-checking it before reuse and replacing it when it is unhealthy or
// older than max_container_reuse_time. See GetOrCreate.
func (e *Environment) Get(ctx context.Context, name string) (*Container, error) {
	return e.GetOrCreate(ctx, name, nil)
}

// GetOrCreate returns the container of service name, creating it if there
// is none. A declared service (Main, New) lives in the suite pod; for an
// undeclared name, factory (called at most once per name) gives its
// definition, and it gets a pod of its own, since a pod's ports are fixed
// at creation. Concurrent calls for one name cause exactly one creation; a
// failed creation is reported to every caller that waited for it, and the
// next call tries again.
func (e *Environment) GetOrCreate(ctx context.Context, name string, factory func() Service) (*Container, error) {
	ent, err := e.lookup(name, factory)
	if err != nil {
		return nil, err
	}
	return e.acquire(ctx, ent, false)
}

func (e *Environment) lookup(name string, factory func() Service) (*entry, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, fmt.Errorf("cleanroom: get %s: the environment is closed", name)
	}
	if ent, ok := e.byName[name]; ok {
		return ent, nil
	}
	if factory == nil {
		return nil, fmt.Errorf("cleanroom: no service %q; declared: %s", name, strings.Join(e.Services(), ", "))
	}
	s := factory().clone()
	s.name = name
	if img := e.cfg.Images[name]; img != "" {
		s.image = img
	}
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("cleanroom: %w", err)
	}
	ent := &entry{svc: &s, late: true}
	e.byName[name] = ent
	return ent, nil
}

// acquire returns the entry's container after the reuse checks, creating
// or replacing it as needed. user counts the caller as a user of the
// container until release.
func (e *Environment) acquire(ctx context.Context, ent *entry, user bool) (*Container, error) {
	ent.mu.Lock()
	for {
		if e.isClosed() {
			ent.mu.Unlock()
			return nil, fmt.Errorf("cleanroom: get %s: the environment is closed", ent.svc.name)
		}
		if cl := ent.inflight; cl != nil {
			ent.mu.Unlock()
			select {
			case <-cl.done:
			case <-ctx.Done():
				return nil, fmt.Errorf("cleanroom: wait for %s to start: %w", ent.svc.name, ctx.Err())
			}
			if cl.err != nil {
				return nil, cl.err
			}
			ent.mu.Lock()
			if ent.cur == cl.c {
				if user {
					ent.users++
				}
				e.reused.Add(1)
				ent.mu.Unlock()
				return cl.c, nil
			}
			continue // replaced again meanwhile: look once more
		}
		reason := ""
		if c := ent.cur; c != nil {
			switch age := time.Since(c.Created); {
			case age > e.cfg.MaxContainerReuseTime && ent.users == 0 && !e.othersAttached():
				reason = fmt.Sprintf("it is %s old, more than max_container_reuse_time (%s)", age.Round(time.Millisecond), e.cfg.MaxContainerReuseTime)
			case time.Since(ent.lastHealthy) < e.cfg.ContainerHealthCheckInterval:
				// healthy recently enough
			default:
				if err := e.checkHealth(ctx, ent.healthProbe(c), c); err != nil {
					reason = "it is unhealthy: " + err.Error()
				} else {
					ent.lastHealthy = time.Now()
				}
			}
			if reason == "" {
				if user {
					ent.users++
				}
				e.reused.Add(1)
				ent.mu.Unlock()
				return c, nil
			}
		}
		// Create (or replace) the container, outside the lock; callers that
		// arrive meanwhile wait for this call's result.
		old := ent.cur
		cl := &call{done: make(chan struct{})}
		ent.inflight, ent.cur = cl, nil
		closeProbe(ent.probe)
		ent.probe, ent.probeOf = nil, nil
		ent.mu.Unlock()

		if old != nil {
			e.log.Warn("cleanroom: replacing container", "service", ent.svc.name, "container", old.Name, "reason", reason)
			e.replaced.Add(1)
		}
		c, err := e.create(ctx, ent, old)

		ent.mu.Lock()
		ent.inflight = nil
		cl.c, cl.err = c, err
		if err == nil {
			// Users of a replaced container do not count for the new one.
			ent.cur, ent.lastHealthy, ent.users = c, time.Now(), 0
			if user {
				ent.users = 1
			}
		}
		close(cl.done)
		ent.mu.Unlock()
		return c, err
	}
}

// release ends a test's use of c.
func (e *Environment) release(ent *entry, c *Container) {
	ent.mu.Lock()
	if ent.cur == c && ent.users > 0 {
		ent.users--
	}
	ent.mu.Unlock()
}

func (e *Environment) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// checkHealth runs the health probe p (nil: "is it running") once; when it
// fails, the container's state is added to the reason.
func (e *Environment) checkHealth(ctx context.Context, p healthcheck.Probe, c *Container) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var err error
	if p != nil {
		err = p.Check(ctx)
	} else {
		err = e.checkRunning(ctx, c.ID)
	}
	if err == nil {
		return nil
	}
	info, ierr := e.eng.InspectContainer(ctx, c.ID)
	switch {
	case errors.Is(ierr, podman.ErrNotFound):
		return fmt.Errorf("%w (the container is gone)", err)
	case ierr == nil && !info.State.Running:
		return fmt.Errorf("%w (the container is %s, exit code %d)", err, info.State.Status, info.State.ExitCode)
	}
	return err
}

func (e *Environment) checkRunning(ctx context.Context, id string) error {
	info, err := e.eng.InspectContainer(ctx, id)
	if err != nil {
		return err
	}
	if !info.State.Running {
		return fmt.Errorf("container is %s (exit code %d)", info.State.Status, info.State.ExitCode)
	}
	return nil
}

// create makes the entry's container in its pod, removing old first. In
// a shared pod another process may be making it at the same time: then
// this one adopts the other's (see ensureContainer).
func (e *Environment) create(ctx context.Context, ent *entry, old *Container) (*Container, error) {
	// Creation outlives the caller that triggered it (others wait for it).
	// A pull has its own timeout; the rest is bounded by the start-up one.
	ctx = context.WithoutCancel(ctx)
	if err := e.ensureImage(ctx, ent.svc); err != nil {
		return nil, fmt.Errorf("start %s: image %s: %w", ent.svc.name, ent.svc.image, err)
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.ContainerStartupTimeout)
	defer cancel()
	if old != nil {
		if err := e.eng.RemoveContainer(ctx, old.ID); err != nil && !errors.Is(err, podman.ErrNotFound) {
			return nil, fmt.Errorf("start %s: remove the container it replaces: %w", ent.svc.name, err)
		}
	}
	for attempt := 0; ; attempt++ {
		p, err := e.podFor(ctx, ent)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", ent.svc.name, err)
		}
		c, err := e.ensureContainer(ctx, p, ent.svc.with(p.secret), p.name+"-"+ent.svc.name)
		if errors.Is(err, errPodGone) && attempt == 0 {
			e.forgetPod(p)
			continue // removed from outside: make a new one
		}
		return c, err
	}
}

var errPodGone = errors.New("pod is gone")

// podFor returns the pod the entry's container lives in, creating or
// adopting it on first use: the suite pod for declared services (shared by
// every process of the suite), a pod of this process's own otherwise.
func (e *Environment) podFor(ctx context.Context, ent *entry) (*pod, error) {
	if err := e.ensureLease(ctx); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, errors.New("the environment is closed")
	}
	if !ent.late {
		if e.suitePod == nil {
			p, err := e.createOrAdoptPod(ctx, e.podName, e.ports, "suite")
			if err != nil {
				return nil, err
			}
			e.suitePod = p
		}
		return e.suitePod, nil
	}
	// A late service's pod is named after it and reused across replacements.
	return e.createOrAdoptPod(ctx, e.prefix+"-"+ent.svc.name, ent.svc.ports, "service")
}

// forgetPod drops a pod that was removed from outside.
func (e *Environment) forgetPod(p *pod) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.suitePod != nil && e.suitePod.id == p.id {
		e.suitePod = nil
	}
	delete(e.pods, p.name)
	e.log.Warn("cleanroom: pod vanished; creating it again", "pod", p.name)
}

// createOrAdoptPod returns pod name, creating it (ports published on
// 127.0.0.1, host ports chosen by the engine) or, when another process
// created it, adopting it. The engine's name uniqueness is the lock: of
// concurrent creators exactly one succeeds, the others get a conflict and
// adopt. Called with e.mu held.
func (e *Environment) createOrAdoptPod(ctx context.Context, name string, ports []uint16, role string) (*pod, error) {
	for attempt := 0; ; attempt++ {
		info, err := e.eng.InspectPod(ctx, name)
		if err == nil {
			if info.Labels[podman.LabelManaged] != "true" || info.Labels[LabelSuite] != e.suite {
				return nil, fmt.Errorf("a pod named %s exists but is not this suite's (labels %v); remove it (podman pod rm -f %s) or choose another suite name", name, info.Labels, name)
			}
			p, err := e.podFromInfo(info)
			if err != nil {
				return nil, err
			}
			if p.secret == "" {
				return nil, fmt.Errorf("pod %s carries no %s label; remove it: podman pod rm -f %s", name, LabelSecret, name)
			}
			if missing := missingPorts(p, ports); len(missing) > 0 {
				// Podman creates a pod, then its infra container with the
				// ports: a pod seconds old may be half made. Look again.
				if time.Since(info.Created) < 10*time.Second {
					time.Sleep(20 * time.Millisecond)
					attempt--
					continue
				}
				return nil, fmt.Errorf("pod %s does not publish ports %v that this suite declares; remove it: podman pod rm -f %s", name, missing, name)
			}
			e.pods[name] = true
			e.log.Debug("cleanroom: adopted pod", "pod", name)
			return p, nil
		}
		if !errors.Is(err, podman.ErrNotFound) {
			return nil, err
		}
		spec := podman.PodSpec{Name: name, Labels: e.labels(map[string]string{
			LabelRole: role, LabelSecret: e.secret, LabelHost: hostname(),
		})}
		for _, p := range ports {
			spec.Ports = append(spec.Ports, podman.Port{ContainerPort: p, HostIP: e.cfg.BindAddress})
		}
		_, err = e.eng.CreatePod(ctx, spec)
		if errors.Is(err, podman.ErrConflict) && attempt < 5 {
			continue // another process was first: adopt its pod
		}
		if err != nil {
			return nil, err
		}
		e.pods[name] = true
		e.log.Debug("cleanroom: created pod", "pod", name)
		// Its infra container (the network namespace, ~0.3 s) starts while
		// the first container is looked up and created.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), e.cfg.ContainerStartupTimeout)
			defer cancel()
			_ = e.eng.StartPod(ctx, name)
		}()
	}
}

func missingPorts(p *pod, ports []uint16) []uint16 {
	var missing []uint16
	for _, port := range ports {
		if p.ports[port] == 0 {
			missing = append(missing, port)
		}
	}
	return missing
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// podFromInfo reads a pod's published ports and the address this process
// reaches them on: the bind address on a local engine; the engine host's
// address on a remote one (ssh://, tcp://) unless the ports are bound to a
// specific address.
func (e *Environment) podFromInfo(info *podman.PodInfo) (*pod, error) {
	p := &pod{name: info.Name, id: info.ID, host: "127.0.0.1", ports: map[uint16]uint16{}, secret: info.Labels[LabelSecret]}
	remote := e.engineHost()
	if remote != "" {
		p.host = remote
	}
	for key, addr := range info.Ports {
		port, proto, _ := strings.Cut(key, "/")
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || proto != "tcp" {
			continue
		}
		p.ports[uint16(n)] = addr.Port
		if addr.IP != "" && addr.IP != "0.0.0.0" && (remote == "" || !isLoopback(addr.IP)) {
			p.host = addr.IP
		}
	}
	return p, nil
}

// engineHost is the host of a remote engine's URI ("" for a local socket,
// or a remote URI that points at this machine).
func (e *Environment) engineHost() string { return remoteHost(e.endpoint.URI) }

func remoteHost(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || (u.Scheme != "ssh" && u.Scheme != "tcp") || isLoopback(u.Hostname()) {
		return ""
	}
	return u.Hostname()
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (e *Environment) labels(extra map[string]string) map[string]string {
	l := map[string]string{
		LabelSuite:     e.suite,
		LabelRun:       e.run,
		LabelPID:       strconv.Itoa(os.Getpid()),
		LabelCreatedAt: time.Now().UTC().Format(time.RFC3339),
		LabelVersion:   Version,
	}
	maps.Copy(l, extra)
	return l
}

// ensureContainer returns the running, ready container name of svc in
// pod p: it creates and starts it, or, when another process of the suite
// created it, adopts it (waiting until it is ready). A container that is
// dead, or stuck before start for longer than the start-up timeout, is
// removed and made again. On failure nothing it created is left.
func (e *Environment) ensureContainer(ctx context.Context, p *pod, svc *Service, name string) (*Container, error) {
	began := time.Now()
	defHash := hash(svc.definition())
	for attempt := 0; ; attempt++ {
		if attempt == 8 {
			return nil, fmt.Errorf("start %s: gave up after %d attempts to create or adopt %s", svc.name, attempt, name)
		}
		info, err := e.eng.InspectContainer(ctx, name)
		if errors.Is(err, podman.ErrNotFound) {
			c, err := e.startContainer(ctx, p, svc, name, defHash, began)
			if errors.Is(err, podman.ErrConflict) {
				continue // another process created it first: adopt it
			}
			return c, err
		}
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", svc.name, err)
		}
		if info.Pod != p.id {
			// A container of a pod that no longer exists cannot be; one of
			// another pod with our name is not ours to touch.
			return nil, fmt.Errorf("start %s: container %s belongs to another pod (%s); remove it: podman rm -f %s", svc.name, name, info.Pod, name)
		}
		if h := info.Labels[LabelConfigHash]; h != defHash {
			return nil, fmt.Errorf("start %s: the suite's container %s runs another definition of the service (config hash %s, this process has %s): "+
				"processes of one suite must declare the same services; give the suites different names (suite / CLEANROOM_SUITE)", svc.name, name, h, defHash)
		}
		c := e.containerOf(p, svc, info.ID, name, info.Created)
		switch {
		case info.State.Running:
			if err := e.waitReady(ctx, svc, c); err != nil {
				if errors.Is(err, errNotRunning) {
					continue // it died while we waited: look again
				}
				return nil, e.readyFailure(ctx, svc, c, err, false)
			}
			e.adopted.Add(1)
			e.log.Info("cleanroom: adopted container", "service", svc.name, "container", name, "took", time.Since(began).Round(time.Millisecond))
			return c, nil
		case isStarting(info.State.Status) && time.Since(info.Created) < e.cfg.ContainerStartupTimeout:
			// Its creator is about to start it.
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("start %s: wait for %s to start: %w", svc.name, name, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		default: // exited, or its creator died before starting it
			e.log.Warn("cleanroom: removing a dead container of the suite", "container", name, "status", info.State.Status)
			if err := e.eng.RemoveContainer(ctx, info.ID); err != nil && !errors.Is(err, podman.ErrNotFound) {
				return nil, fmt.Errorf("start %s: remove dead container %s: %w", svc.name, name, err)
			}
		}
	}
}

func isStarting(status string) bool {
	switch status {
	case "created", "configured", "initialized":
		return true
	}
	return false
}

// containerOf describes container id of svc in pod p.
func (e *Environment) containerOf(p *pod, svc *Service, id, name string, created time.Time) *Container {
	c := &Container{
		Service: svc.name, ID: id, Name: name, PodID: p.id, PodName: p.name, Image: svc.image,
		Created: created, host: p.host, ports: map[uint16]uint16{}, env: svc.env, secret: p.secret, owner: e,
	}
	for _, port := range svc.ports {
		c.ports[port] = p.ports[port]
	}
	return c
}

// startContainer creates svc's container in pod p, starts it and waits
// until it is ready. A name taken meanwhile gives ErrConflict (to adopt).
func (e *Environment) startContainer(ctx context.Context, p *pod, svc *Service, name, defHash string, began time.Time) (*Container, error) {
	fail := func(step string, err error) (*Container, error) {
		return nil, fmt.Errorf("start %s: %s: %w", svc.name, step, err)
	}
	image := svc.image
	snapRef, snapKey, baseID := e.snapshotRef(ctx, svc, p.secret)
	fromSnapshot := false
	if snapRef != "" {
		e.dropSnapshotOnce(ctx, svc, snapRef)
		if ok, err := e.eng.ImageExists(ctx, snapRef); err == nil && ok {
			image, fromSnapshot = snapRef, true
		}
	}
	spec := podman.ContainerSpec{
		Name: name, Image: image, Pod: p.id,
		Env: svc.env, Entrypoint: svc.entrypoint, Command: svc.command, Tmpfs: svc.tmpfs,
		// The role is set, never inherited: a snapshot image carries its
		// builder's labels.
		Labels: e.labels(map[string]string{LabelService: svc.name, LabelConfigHash: defHash, LabelRole: "service"}),
		// The backstop if every process of ours dies: conmon kills the
		// container after this, whatever happens to us.
		Timeout: 2*e.cfg.MaxContainerReuseTime + e.cfg.ContainerStartupTimeout,
		// Test data is thrown away: no need to wait Podman's 10 s for a
		// process that ignores the stop signal (a shell as PID 1).
		StopTimeout: 2 * time.Second,
	}
	id, err := e.eng.CreateContainer(ctx, spec)
	if errors.Is(err, podman.ErrConflict) {
		return nil, err
	}
	if errors.Is(err, podman.ErrPodNotFound) {
		return nil, fmt.Errorf("start %s: %w: %w", svc.name, errPodGone, err)
	}
	if err != nil {
		return fail("create container", err)
	}
	c := e.containerOf(p, svc, id, name, time.Now())
	startedAt := time.Now()
	if err := e.eng.StartContainer(ctx, id); err != nil {
		e.removeContainer(ctx, c)
		if errors.Is(err, podman.ErrNotFound) {
			return nil, fmt.Errorf("start %s: %w: %w", svc.name, errPodGone, err)
		}
		return fail("start container", err)
	}
	if err := e.waitReady(ctx, svc, c); err != nil {
		return nil, e.readyFailure(ctx, svc, c, err, true)
	}
	c.ReadyIn = time.Since(startedAt)
	e.started.Add(1)
	if fromSnapshot {
		e.fromSnapshot.Add(1)
	} else if snapRef != "" {
		e.buildSnapshot(svc, snapRef, snapKey, baseID)
	}
	e.log.Info("cleanroom: started container", "service", svc.name, "container", name, "image", image,
		"took", time.Since(began).Round(time.Millisecond))
	return c, nil
}

// readyFailure builds the error of a container that did not become ready,
// with its last log lines, and removes it.
func (e *Environment) readyFailure(ctx context.Context, svc *Service, c *Container, err error, remove bool) error {
	lines, lerr := e.eng.Logs(context.WithoutCancel(ctx), c.ID, logTail)
	if remove {
		e.removeContainer(ctx, c)
	}
	msg := fmt.Sprintf("start %s: wait ready (%s): %v", svc.name, e.cfg.ContainerStartupTimeout, err)
	if host := e.engineHost(); host != "" {
		msg += fmt.Sprintf("\n(the engine is remote: check that %s accepts connections to the published ports from this machine — firewall, bind_address %s)", host, e.cfg.BindAddress)
	}
	if lerr == nil {
		msg += fmt.Sprintf("\nlast %d log lines of %s:\n  %s", len(lines), c.Name, strings.Join(lines, "\n  "))
	}
	return errors.New(msg)
}

func (e *Environment) removeContainer(ctx context.Context, c *Container) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := e.eng.RemoveContainer(rctx, c.ID); err != nil && !errors.Is(err, podman.ErrNotFound) {
		e.log.Error("cleanroom: remove failed container", "container", c.Name, "error", err)
	}
}

// errNotRunning: the container stopped while we waited for it.
var errNotRunning = errors.New("the container is not running")

// readyPolling probes often while a service starts: a refused connection
// costs well under a millisecond, and a coarse backoff would add up to its
// step to every start (a Postgres from a snapshot is ready in ~0.3 s).
var readyPolling = healthcheck.Options{Initial: 5 * time.Millisecond, Max: 25 * time.Millisecond}

// waitReady polls the readiness probe; a container that stops running
// ends the wait at once.
func (e *Environment) waitReady(ctx context.Context, svc *Service, c *Container) error {
	probe := svc.readyProbe(c)
	if probe == nil {
		return healthcheck.Wait(ctx, healthcheck.Func("container running", func(ctx context.Context) error {
			return e.checkRunning(ctx, c.ID)
		}), readyPolling)
	}
	defer closeProbe(probe)
	var lastInspect time.Time
	return healthcheck.Wait(ctx, healthcheck.Func(probe.String(), func(ctx context.Context) error {
		err := probe.Check(ctx)
		if err == nil || time.Since(lastInspect) < 500*time.Millisecond {
			return err
		}
		lastInspect = time.Now()
		info, ierr := e.eng.InspectContainer(ctx, c.ID)
		if errors.Is(ierr, podman.ErrNotFound) {
			return healthcheck.Permanent(fmt.Errorf("%w: it is gone: %w", errNotRunning, err))
		}
		if ierr == nil && !info.State.Running {
			return healthcheck.Permanent(fmt.Errorf("%w: it %s (exit code %d): %w", errNotRunning, info.State.Status, info.State.ExitCode, err))
		}
		return err
	}), readyPolling)
}

// ensureImage pulls the service's image when the engine does not have it,
// with progress where someone can watch (see pullOutput), bounded by the
// pull timeout, not the start-up timeout.
func (e *Environment) ensureImage(ctx context.Context, svc *Service) error {
	if _, ok := e.imagesPresent.Load(svc.image); ok {
		return nil
	}
	ok, err := e.eng.ImageExists(ctx, svc.image)
	if err != nil {
		return err
	}
	if ok {
		e.imagesPresent.Store(svc.image, struct{}{})
		return nil
	}
	e.log.Info("cleanroom: pulling image", "image", svc.image)
	out, terminal := pullOutput()
	began := time.Now()
	err = PullWithProgress(ctx, pullLogger{e.eng, e.log, svc.image}, svc.image, PullOptions{
		Timeout: e.cfg.PullTimeout, Output: out, Terminal: terminal,
	})
	if err != nil {
		env := "CLEANROOM_" + strings.ToUpper(strings.ReplaceAll(svc.name, "-", "_")) + "_IMAGE"
		return fmt.Errorf("%w\n(the image is not in the engine's store and could not be pulled: pull or build it, or choose another with [cleanroom.images] %s = \"…\" or %s)", err, svc.name, env)
	}
	e.log.Info("cleanroom: pulled image", "image", svc.image, "took", time.Since(began).Round(time.Millisecond))
	e.imagesPresent.Store(svc.image, struct{}{})
	return nil
}

// pullLogger passes pull events on to the debug log too.
type pullLogger struct {
	eng   engine
	log   *slog.Logger
	image string
}

func (p pullLogger) Pull(ctx context.Context, ref string, progress func(podman.PullEvent)) error {
	return p.eng.Pull(ctx, ref, func(ev podman.PullEvent) {
		p.log.Debug("cleanroom: pull", "image", p.image, "status", ev.Status, "layer", ev.Layer, "current", ev.Current, "total", ev.Total)
		progress(ev)
	})
}

// Reset returns service name to an empty state: Postgres truncates every
// user table (RESTART IDENTITY CASCADE) and resets search_path settings;
// Redis flushes every logical database not leased to a test (FLUSHDB on
// each; leases of isolation.LeaseDB and their data stay); a Generic
// service runs its ResetWith function or ResetCommand.
func (e *Environment) Reset(ctx context.Context, name string) error {
	ent, err := e.lookup(name, nil)
	if err != nil {
		return err
	}
	c, err := e.acquire(ctx, ent, false)
	if err != nil {
		return err
	}
	svc := ent.svc
	switch {
	case svc.reset != nil:
		err = svc.reset(ctx, c)
	case svc.resetCmd != nil:
		var res podman.ExecResult
		res, err = e.eng.Exec(ctx, c.ID, svc.resetCmd)
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("%q exited with %d: %s", strings.Join(svc.resetCmd, " "), res.ExitCode, strings.TrimSpace(string(res.Stderr)))
		}
	default:
		err = errors.New("the service has no reset; give it one with cleanroom.ResetWith or cleanroom.ResetCommand")
	}
	if err != nil {
		return fmt.Errorf("cleanroom: reset %s: %w", name, err)
	}
	return nil
}

// perTestContainer starts svc in a pod of its own, for one test.
func (e *Environment) perTestContainer(ctx context.Context, svc *Service) (*Container, func() error, error) {
	ctx = context.WithoutCancel(ctx)
	if err := e.ensureImage(ctx, svc); err != nil {
		return nil, nil, fmt.Errorf("start %s: image %s: %w", svc.name, svc.image, err)
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.ContainerStartupTimeout)
	defer cancel()
	if err := e.ensureLease(ctx); err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", svc.name, err)
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, nil, errors.New("the environment is closed")
	}
	e.counter++
	name := fmt.Sprintf("%s-t%d", e.prefix, e.counter)
	p, err := e.createOrAdoptPod(ctx, name, svc.ports, "per-test")
	e.mu.Unlock()
	removePod := func() error {
		rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := e.eng.RemovePod(rctx, name)
		if errors.Is(err, podman.ErrNotFound) {
			err = nil
		}
		if err == nil {
			e.mu.Lock()
			delete(e.pods, name)
			e.mu.Unlock()
		}
		return err
	}
	if err != nil {
		_ = removePod()
		return nil, nil, fmt.Errorf("start %s: %w", svc.name, err)
	}
	c, err := e.ensureContainer(ctx, p, svc.with(p.secret), name+"-"+svc.name)
	if err != nil {
		return nil, nil, errors.Join(err, removePod())
	}
	e.perTest.Add(1)
	return c, removePod, nil
}

// noteReady records how long the first use of a service waited.
func (e *Environment) noteReady(name string, d time.Duration) {
	e.readyMu.Lock()
	defer e.readyMu.Unlock()
	if e.ready == nil {
		e.ready = map[string]time.Duration{}
	}
	if _, ok := e.ready[name]; !ok {
		e.ready[name] = d
	}
}

// Stats counts what an Environment did.
type Stats struct {
	Started  int64 // containers started (including replacements and per-test ones)
	Snapshot int64 // of those, started from a snapshot image
	Adopted  int64 // containers another process of the suite had started
	Reused   int64 // times an existing container was handed out again
	Replaced int64 // containers replaced: unhealthy, vanished or too old
	PerTest  int64 // per-test containers (singletons off, or fallback)
}

// Stats returns the counters so far.
func (e *Environment) Stats() Stats {
	return Stats{Started: e.started.Load(), Snapshot: e.fromSnapshot.Load(), Adopted: e.adopted.Load(), Reused: e.reused.Load(), Replaced: e.replaced.Load(), PerTest: e.perTest.Load()}
}

// Entry is one row of the registry.
type Entry struct {
	Service     string
	PodID       string
	ContainerID string
	Created     time.Time
	LastHealthy time.Time
	Users       int // tests of this process attached now
}

// Registry returns the services that have a container now, by name.
func (e *Environment) Registry() map[string]Entry {
	e.mu.Lock()
	ents := slices.Collect(maps.Values(e.byName))
	e.mu.Unlock()
	out := map[string]Entry{}
	for _, ent := range ents {
		ent.mu.Lock()
		if c := ent.cur; c != nil {
			out[ent.svc.name] = Entry{Service: ent.svc.name, PodID: c.PodID, ContainerID: c.ID,
				Created: c.Created, LastHealthy: ent.lastHealthy, Users: ent.users}
		}
		ent.mu.Unlock()
	}
	return out
}

// Suite is the suite key: Config.Suite, or a hash of the module root, the
// declared services' definitions and the bind address (with the host name
// for a remote engine).
func (e *Environment) Suite() string { return e.suite }

// Close removes the pods only this process used (per-test pods, late
// services), gives back its lease on the suite pod — the suite's reaper
// removes that once no process holds it for the grace period — and closes
// the engine connection. Where leases are unavailable, it removes the
// suite pod too. Every failure is reported (aggregated); calling Close
// again returns the same result.
func (e *Environment) Close(ctx context.Context) error {
	e.closeOnce.Do(func() {
		e.snapWG.Wait() // a snapshot being saved finishes (bounded) and removes its builder
		e.mu.Lock()
		e.closed = true
		names := slices.Sorted(maps.Keys(e.pods))
		ents := slices.Collect(maps.Values(e.byName))
		e.mu.Unlock()
		for _, ent := range ents {
			ent.mu.Lock()
			closeProbe(ent.probe)
			ent.probe, ent.probeOf = nil, nil
			ent.mu.Unlock()
		}
		e.closersMu.Lock()
		for _, f := range e.closers {
			f()
		}
		e.closers = nil
		e.closersMu.Unlock()
		var result *multierror.Error
		for _, name := range names {
			if e.share != nil && name == e.podName {
				continue // shared: the reaper removes it when the last process is gone
			}
			if err := e.eng.RemovePod(ctx, name); err != nil && !errors.Is(err, podman.ErrNotFound) {
				result = multierror.Append(result, fmt.Errorf("cleanroom: close: %w", err))
				continue
			}
			e.mu.Lock()
			delete(e.pods, name)
			e.mu.Unlock()
			e.log.Debug("cleanroom: removed pod", "pod", name)
		}
		e.releaseLease()
		if err := e.eng.Close(); err != nil {
			result = multierror.Append(result, err)
		}
		e.closeErr = result.ErrorOrNil()
	})
	return e.closeErr
}
