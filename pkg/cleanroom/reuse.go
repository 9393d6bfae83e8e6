package cleanroom

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// entry is one registry slot: a service and its current container.
type entry struct {
	svc  *Service
	late bool // added by GetOrCreate: lives in a pod of its own

	mu          sync.Mutex
	cur         *Container
	lastHealthy time.Time
	users       int           // tests of this process attached to cur
	inflight    *call         // a creation or replacement under way
	probing     *probeCall    // a health probe of cur under way
	condemned   error         // why cur must be replaced (a failed probe)
	fallback    error         // the singleton failed: per-test until retryAt
	retryAt     time.Time     // when a test tries the singleton again
	backoff     time.Duration // the wait before the next try
	retrying    bool          // a test is trying the singleton again
	broken      error         // the per-test fallback failed too: fail fast
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

// call is a creation (or replacement) of a container, which every caller
// that arrives meanwhile waits for.
type call struct {
	done chan struct{}
	c    *Container
	err  error
}

// probeCall is one health check of a container. It runs on a context of
// its own: callers wait for it with theirs, so a caller that gives up (a
// cancelled t.Context() in a cleanup, say) gets its own error back and
// never decides the container's fate.
type probeCall struct {
	done chan struct{}
	c    *Container // the container checked
	err  error      // nil: healthy
}

// Get returns the declared service's container, starting it (and every
// other declared service, beside it) on the first use of any,
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
	ent, err := e.lookup(ctx, name, factory)
	if err != nil {
		return nil, err
	}
	return e.acquire(ctx, ent, false, false)
}

// lookup returns the registry slot of service name, adding it from
// factory (called without any lock held, at most once per name: a factory
// may use the environment) when there is none.
func (e *Environment) lookup(ctx context.Context, name string, factory func() Service) (*entry, error) {
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return nil, fmt.Errorf("cleanroom: get %s: the environment is closed", name)
		}
		if ent, ok := e.byName[name]; ok {
			e.mu.Unlock()
			return ent, nil
		}
		if factory == nil {
			e.mu.Unlock()
			return nil, fmt.Errorf("cleanroom: no service %q; declared: %s", name, strings.Join(e.Services(), ", "))
		}
		if w, ok := e.making[name]; ok {
			e.mu.Unlock()
			select {
			case <-w:
			case <-ctx.Done():
				return nil, fmt.Errorf("cleanroom: get %s: %w", name, ctx.Err())
			}
			continue
		}
		w := make(chan struct{})
		e.making[name] = w
		e.mu.Unlock()

		s := factory().clone()
		s.name = name
		if img := e.cfg.Images[name]; img != "" {
			s.image = img
		}
		err := s.validate()

		e.mu.Lock()
		delete(e.making, name)
		close(w)
		if err != nil {
			e.mu.Unlock()
			return nil, fmt.Errorf("cleanroom: %w", err)
		}
		ent := &entry{svc: &s, late: true}
		e.byName[name] = ent
		e.mu.Unlock()
		return ent, nil
	}
}

// acquire returns the entry's container after the reuse checks, creating
// or replacing it as needed. user counts the caller as a user of the
// container until release. The entry's lock is never held across engine or
// network calls: a probe and a creation run on their own, and every waiter
// waits with its own context. A background acquire (startOthers) is no
// caller's: it never counts as a reuse.
func (e *Environment) acquire(ctx context.Context, ent *entry, user, background bool) (*Container, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cleanroom: get %s: %w", ent.svc.name, err)
	}
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
				if !background {
					e.reused.Add(1)
				}
				ent.mu.Unlock()
				return cl.c, nil
			}
			continue // replaced again meanwhile: look once more
		}
		if pc := ent.probing; pc != nil {
			ent.mu.Unlock()
			select {
			case <-pc.done:
			case <-ctx.Done():
				return nil, fmt.Errorf("cleanroom: wait for the health check of %s: %w", ent.svc.name, ctx.Err())
			}
			ent.mu.Lock()
			if pc.err == nil && ent.cur == pc.c && ent.condemned == nil {
				if user {
					ent.users++
				}
				if !background {
					e.reused.Add(1)
				}
				ent.mu.Unlock()
				return pc.c, nil
			}
			continue // condemned, or replaced meanwhile: look once more
		}
		reason := ""
		if c := ent.cur; c != nil {
			switch age := time.Since(c.Created); {
			case ent.condemned != nil:
				reason = "it is unhealthy: " + ent.condemned.Error()
			case age > e.cfg.MaxContainerReuseTime && ent.users == 0 && !e.othersAttached():
				reason = fmt.Sprintf("it is %s old, more than max_container_reuse_time (%s)", age.Round(time.Millisecond), e.cfg.MaxContainerReuseTime)
			case time.Since(ent.lastHealthy) < e.cfg.ContainerHealthCheckInterval:
				// healthy recently enough
			default:
				pc := &probeCall{done: make(chan struct{}), c: c}
				ent.probing = pc
				go e.runHealthCheck(ent, c, ent.healthProbe(c), pc)
				continue // wait for it like any other caller
			}
			if reason == "" {
				if user {
					ent.users++
				}
				if !background {
					e.reused.Add(1)
				}
				ent.mu.Unlock()
				return c, nil
			}
		}
		// Create (or replace) the container, on its own: callers, this one
		// included, wait for the call's result with their own contexts.
		old := ent.cur
		cl := &call{done: make(chan struct{})}
		ent.inflight, ent.cur, ent.condemned = cl, nil, nil
		closeProbe(ent.probe)
		ent.probe, ent.probeOf = nil, nil
		if old != nil {
			e.noteReplacement(ent.svc.name, old, reason)
		}
		if old == nil && !ent.late {
			e.startOthers(ent)
		}
		go func() {
			c, err := e.create(ctx, ent, old)
			ent.mu.Lock()
			defer ent.mu.Unlock()
			ent.inflight = nil
			cl.c, cl.err = c, err
			if err == nil {
				// Users of a replaced container do not count for the new one.
				ent.cur, ent.lastHealthy, ent.users = c, time.Now(), 0
			}
			close(cl.done)
		}()
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
			ent.mu.Unlock()
			return cl.c, nil
		}
		// replaced again meanwhile: look once more
	}
}

// runHealthCheck checks c with probe p, on a context of its own, and
// records the outcome: healthy now, or condemned (replaced at the next
// attach). A failed probe of a container that still runs is tried once
// more, on a fresh probe, before the container is condemned: a kept
// connection can die without the server being at fault.
func (e *Environment) runHealthCheck(ent *entry, c *Container, p healthcheck.Probe, pc *probeCall) {
	err := e.checkHealth(p, c)
	if err != nil && !errors.Is(err, errContainerGone) {
		time.Sleep(healthRetryDelay)
		fresh := ent.svc.healthProbe(c)
		if err = e.checkHealth(fresh, c); err == nil {
			ent.mu.Lock()
			if ent.probeOf == c { // use the fresh one from now on
				closeProbe(ent.probe)
				ent.probe = fresh
				fresh = nil
			}
			ent.mu.Unlock()
		}
		closeProbe(fresh)
	}
	ent.mu.Lock()
	defer ent.mu.Unlock()
	ent.probing, pc.err = nil, err
	if ent.cur == c {
		if err == nil {
			ent.lastHealthy = time.Now()
		} else {
			ent.condemned = err
		}
	}
	close(pc.done)
}

// healthRetryDelay separates the two probes of a container before it is
// condemned.
var healthRetryDelay = 250 * time.Millisecond

// healthTimeout bounds one health probe.
const healthTimeout = 5 * time.Second

// startOthers starts every other declared service, each on its own,
// the first time one of them is created: the pod's services are known up
// front, so none waits for another's start-up (a test that takes a
// database and then a Redis database would otherwise pay for both in
// turn). What fails here is tried again by the next use of that service.
func (e *Environment) startOthers(first *entry) {
	e.startOthersOnce.Do(func() {
		for _, ent := range e.declared {
			if ent != first {
				go func() { _, _ = e.acquire(context.Background(), ent, false, true) }()
			}
		}
	})
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

// errContainerGone: a health check found the container removed or no
// longer running; no second probe is needed to condemn it.
var errContainerGone = errors.New("the container does not run")

// checkHealth runs the health probe p (nil: "is it running") once, bounded
// by healthTimeout; when it fails, the container's state is added to the
// reason (matching errContainerGone when it no longer runs).
func (e *Environment) checkHealth(p healthcheck.Probe, c *Container) error {
	ctx, cancel := context.WithTimeout(context.Background(), healthTimeout)
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
		return &goneError{err, "gone"}
	case ierr == nil && !info.State.Running:
		return &goneError{err, fmt.Sprintf("%s, exit code %d", info.State.Status, info.State.ExitCode)}
	}
	return err
}

// goneError is a failed health check of a container that no longer runs.
type goneError struct {
	err   error
	state string // "gone", "exited, exit code 137", …
}

// Error gives the failed check's error and what became of the container.
func (g *goneError) Error() string { return fmt.Sprintf("%v (the container is %s)", g.err, g.state) }

// Unwrap returns the check's error and errContainerGone, so that errors.Is
// matches either.
func (g *goneError) Unwrap() []error { return []error{g.err, errContainerGone} }

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

// registryRow is one row of the registry: a service's current container.
type registryRow struct {
	Service     string
	PodID       string
	ContainerID string
	Created     time.Time
	LastHealthy time.Time
	Users       int // tests of this process attached now
}

// registry returns the services that have a container now, by name.
func (e *Environment) registry() map[string]registryRow {
	e.mu.Lock()
	ents := slices.Collect(maps.Values(e.byName))
	e.mu.Unlock()
	out := map[string]registryRow{}
	for _, ent := range ents {
		ent.mu.Lock()
		if c := ent.cur; c != nil {
			out[ent.svc.name] = registryRow{Service: ent.svc.name, PodID: c.PodID, ContainerID: c.ID,
				Created: c.Created, LastHealthy: ent.lastHealthy, Users: ent.users}
		}
		ent.mu.Unlock()
	}
	return out
}
