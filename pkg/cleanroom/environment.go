package cleanroom

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/internal/lease"
	"github.com/cleanroom-go/cleanroom/internal/runid"
	"github.com/cleanroom-go/cleanroom/internal/secret"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// Environment owns a suite's service containers: the first use of any
// declared service starts all of them at once in the suite's pod; it
// reuses each while it is healthy
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
	podRole  string      // the suite pod's role label: "suite", or "own" where leases are unavailable
	rootless func() bool // the engine runs rootless (asked once, when needed: podman info takes ~0.4 s)
	// startReaper starts the suite's reaper (spawnReaper; unit tests
	// replace it).
	startReaper func() error
	secret      string // the services' password in pods this process creates
	// secretDerived: every process of this user works the secret out from
	// the suite (see suiteSecret), so no pod label carries it.
	secretDerived bool

	snapMu       sync.Mutex
	snapDropped  map[string]bool // services whose snapshot CLEANROOM_REBUILD dropped
	snapBuilding map[string]bool // snapshot images being built

	// Images known to be in the engine's store, and their IDs: looked up
	// once per environment, not at every container start (per-test pods
	// start hundreds; over ssh each lookup is a round trip).
	imagesPresent sync.Map // image → struct{}
	imageIDs      sync.Map // image → ID
	imageCalls    sync.Map // image → *imageCall: a look-up or pull under way
	snapWG        sync.WaitGroup
	snapshotsDone bool            // Close has begun: no snapshot build starts (under mu)
	snapCtx       context.Context // of snapshot builds; Close cancels it when its own context ends first
	snapCancel    context.CancelFunc

	mu       sync.Mutex
	byName   map[string]*entry
	making   map[string]chan struct{} // late services whose factory runs
	podCalls map[string]*podCall      // pods being created or adopted
	suitePod *pod
	pods     map[string]bool // pods created and not yet removed
	counter  int             // for per-test pod names
	closed   bool

	startOthersOnce sync.Once // see startOthers

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

// New validates cfg and the services, connects to Podman and returns an
// Environment; it reads no file and no environment variable (LoadConfig
// does). Nothing is created yet: the pod and the declared services start
// at the first use of any of them. Run the tests with Run, or Close the Environment when
// done.
func New(ctx context.Context, cfg Config, services ...Service) (*Environment, error) {
	cfg.Images = maps.Clone(cfg.Images)
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
	// The services are checked before the engine is asked anything.
	e, err := newEnvironment(cfg, nil, services)
	if err != nil {
		return nil, err
	}
	c, err := dialEngine(ctx, cfg.Connection)
	if err != nil {
		return nil, fmt.Errorf("cleanroom: %w", err)
	}
	e.eng = c
	if pc, ok := c.(interface{ Endpoint() podman.Endpoint }); ok {
		e.endpoint = pc.Endpoint()
		if e.engineHost() != "" && cfg.Suite == "" {
			// A remote engine may serve several machines whose checkouts sit
			// at the same path: their leases are local, so their suites
			// must not meet.
			e.suite = hash(e.suite + "\x00" + hostname())[:12]
			e.podName = "cleanroom-" + e.suite
			e.prefix = e.podName + "-" + e.run
		}
		e.secret, e.secretDerived = secret.Suite(e.suite)

		if ic, ok := c.(interface {
			Info(context.Context) (podman.Info, error)
		}); ok {
			e.rootless = sync.OnceValue(func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				info, err := ic.Info(ctx)
				return err == nil && info.Host.Security.Rootless
			})
		}
		if dir, err := lease.EngineDir(e.endpoint.URI); err != nil {
			// Without a lease nothing tells this process when the other
			// processes of the suite are done with a shared pod, so it uses
			// a pod of its own, which its Close removes.
			e.podName, e.podRole = e.prefix, "own"
			notice("this process cannot share the suite's pod with other test processes (%v); it starts containers of its own, which makes its start-up slower", err)
		} else {
			e.share = newShared(lease.Files{Dir: dir, Pod: e.podName})
			e.startReaper = func() error { return spawnReaperHook(e) }
		}
	}
	return e, nil
}

func newEnvironment(cfg Config, eng engine, services []Service) (*Environment, error) {
	e := &Environment{
		cfg:         cfg,
		eng:         eng,
		log:         cfg.Logger,
		run:         randomHex(4),
		secret:      randomHex(16),
		byName:      map[string]*entry{},
		making:      map[string]chan struct{}{},
		podCalls:    map[string]*podCall{},
		podRole:     "suite",
		startReaper: func() error { return nil },
		pods:        map[string]bool{},

		snapDropped:  map[string]bool{},
		snapBuilding: map[string]bool{},
	}
	e.snapCtx, e.snapCancel = context.WithCancel(context.Background())
	usedPorts := map[uint16]string{}
	var defs []string
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
		defs = append(defs, s.definition())
	}
	// The same services declared in another order are the same suite
	// (cleanroom up declares them in its own order).
	slices.Sort(defs)
	for _, d := range defs {
		fmt.Fprintln(h, d)
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

func (e *Environment) labels(extra map[string]string) map[string]string {
	l := map[string]string{
		labels.Suite:     e.suite,
		labels.Run:       e.run,
		labels.RunID:     runid.ID(),
		labels.PID:       strconv.Itoa(os.Getpid()),
		labels.CreatedAt: time.Now().UTC().Format(time.RFC3339),
		labels.Version:   labels.LibraryVersion(),
	}
	maps.Copy(l, extra)
	return l
}

// Stats counts what an Environment did.
type Stats struct {
	Started  int64 // containers started (including replacements and per-test ones)
	Snapshot int64 // of those, started from a snapshot image
	Adopted  int64 // containers another process of the suite had started
	Reused   int64 // calls handed a container they did not start (one started beside another service's first use is reused by each call)
	Replaced int64 // containers replaced: unhealthy, vanished or too old
	PerTest  int64 // per-test containers (singletons off, or fallback)
}

// Stats returns the counters so far.
func (e *Environment) Stats() Stats {
	return Stats{Started: e.started.Load(), Snapshot: e.fromSnapshot.Load(), Adopted: e.adopted.Load(), Reused: e.reused.Load(), Replaced: e.replaced.Load(), PerTest: e.perTest.Load()}
}

// Suite is the suite key: Config.Suite, or a hash of the module root, the
// declared services' definitions and the bind address (with the host name
// for a remote engine).
func (e *Environment) Suite() string { return e.suite }

// Close removes the pods only this process used (per-test pods, late
// services), gives back its lease on the suite pod — the suite's reaper
// removes that once no process holds it for the grace period — and closes
// the engine connection. Where leases are unavailable, the process kept a
// suite pod of its own, and Close removes it. A snapshot being saved is
// waited for while ctx allows, then cancelled. Every failure is reported
// (aggregated); calling Close again returns the same result.
func (e *Environment) Close(ctx context.Context) error {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.snapshotsDone = true // no new snapshot build from now on
		e.mu.Unlock()
		// A snapshot being saved finishes (it makes its builder's pod
		// first, so the environment is not closed yet) and removes its
		// builder; when ctx ends first, the build is cancelled (its builder
		// still goes).
		built := make(chan struct{})
		go func() { e.snapWG.Wait(); close(built) }()
		select {
		case <-built:
		case <-ctx.Done():
			e.snapCancel()
			<-built
		}
		e.mu.Lock()
		e.closed = true // no new pod or container from now on
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
		var errs []error
		for _, name := range names {
			if e.share != nil && name == e.podName {
				continue // shared: the reaper removes it when the last process is gone
			}
			if err := e.eng.RemovePod(ctx, name); err != nil && !errors.Is(err, podman.ErrNotFound) {
				errs = append(errs, fmt.Errorf("cleanroom: close: %w", err))
				continue
			}
			e.mu.Lock()
			delete(e.pods, name)
			e.mu.Unlock()
			e.log.Debug("cleanroom: removed pod", "pod", name)
		}
		e.releaseLease()
		if err := e.eng.Close(); err != nil {
			errs = append(errs, err)
		}
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}
