package cleanroom

import (
	"context"
	"errors"
	"fmt"
	"io"
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
