package cleanroom

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// logTail is how many log lines a start-up failure carries.
const logTail = 50

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
		if h := info.Labels[labels.ConfigHash]; h != defHash {
			return nil, fmt.Errorf("start %s: the suite's container %s runs another definition of the service (config hash %s, this process has %s): "+
				"processes of one suite must declare the same services; give the suites different names (suite / CLEANROOM_SUITE)", svc.name, name, h, defHash)
		}
		c := e.containerOf(p, svc, info.ID, name, info.Created)
		age := time.Since(info.Created)
		switch {
		case info.State.Running && age > e.cfg.MaxContainerReuseTime && !e.othersAttached():
			// Kept warm, or left by another package: too old to reuse, and
			// no other process of the suite is using it.
			reason := fmt.Sprintf("it is %s old, more than max_container_reuse_time (%s)", age.Round(time.Millisecond), e.cfg.MaxContainerReuseTime)
			e.noteReplacement(svc.name, c, reason)
			if err := e.eng.RemoveContainer(ctx, info.ID); err != nil && !errors.Is(err, podman.ErrNotFound) {
				return nil, fmt.Errorf("start %s: remove container %s: %w", svc.name, name, err)
			}
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
		case isStarting(info.State.Status) && age < e.cfg.ContainerStartupTimeout && e.runAlive(info.Labels[labels.Run]):
			// Its creator is about to start it.
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("start %s: wait for %s to start: %w", svc.name, name, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		default: // exited, or its creator died (or gave up) before starting it
			e.log.Warn("cleanroom: removing a dead container of the suite", "container", name, "status", info.State.Status)
			if err := e.eng.RemoveContainer(ctx, info.ID); err != nil && !errors.Is(err, podman.ErrNotFound) {
				return nil, fmt.Errorf("start %s: remove dead container %s: %w", svc.name, name, err)
			}
		}
	}
}

// runAlive says whether the test process of run may still be working on
// the suite: it holds a lease, or there are no leases to tell.
func (e *Environment) runAlive(run string) bool {
	if e.share == nil || run == e.run {
		return true
	}
	return slices.Contains(e.share.files.LiveRuns(), run)
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
		Labels: e.labels(map[string]string{labels.Service: svc.name, labels.ConfigHash: defHash, labels.Role: "service"}),
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
	return &startError{service: svc.name, timeout: e.cfg.ContainerStartupTimeout, err: err, remote: e.engineHost(),
		bind: e.cfg.BindAddress, container: c.Name, logs: lines, logsOK: lerr == nil}
}

// startError is a container that did not become ready: it says whether it
// exited or was still starting when the time ran out, carries its last log
// lines, and unwraps to the cause (errors.Is(err,
// context.DeadlineExceeded) holds for a timeout).
type startError struct {
	service   string
	timeout   time.Duration
	err       error
	remote    string // the engine's host, when remote
	bind      string
	container string
	logs      []string
	logsOK    bool
}

// Error says which service failed to start and why (stopped early, or not
// ready within the start-up timeout), with a hint for a remote engine and the
// container's last log lines when they could be read.
func (s *startError) Error() string {
	var b strings.Builder
	if errors.Is(s.err, errNotRunning) {
		fmt.Fprintf(&b, "start %s: the container stopped before it was ready: %v", s.service, s.err)
	} else {
		fmt.Fprintf(&b, "start %s: wait ready (%s): %v", s.service, s.timeout, s.err)
		if s.remote != "" {
			fmt.Fprintf(&b, "\n(the engine is remote: check that %s accepts connections to the published ports from this machine — firewall, bind_address %s)", s.remote, s.bind)
		}
	}
	if s.logsOK {
		fmt.Fprintf(&b, "\nlast %d log lines of %s:\n  %s", len(s.logs), s.container, strings.Join(s.logs, "\n  "))
	}
	return b.String()
}

// Unwrap returns the cause: the probe's last error, the context's error or
// errNotRunning.
func (s *startError) Unwrap() error { return s.err }

func (e *Environment) removeContainer(ctx context.Context, c *Container) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := e.eng.RemoveContainer(rctx, c.ID); err != nil && !errors.Is(err, podman.ErrNotFound) {
		e.log.Error("cleanroom: remove failed container", "container", c.Name, "error", err)
	}
}

// errNotRunning: the container stopped while we waited for it.
var errNotRunning = errors.New("the container is not running")

// readyPolling is how often readiness is probed when nothing else says
// when: a refused connection costs well under a millisecond, and a Postgres
// from a snapshot is ready in ~0.3 s. Where the engine can follow the
// container's log (every Podman), each line the server writes also
// triggers a probe at once, so a server that says it is ready is seen
// within a round trip, not at the next step.
var readyPolling = healthcheck.Options{Initial: 5 * time.Millisecond, Max: 25 * time.Millisecond}

// logFollower is the engine part that streams a container's log; the
// readiness wait uses it when the engine has it.
type logFollower interface {
	FollowLogs(ctx context.Context, nameOrID string, each func(line string)) error
}

// waitReady polls the readiness probe, at once on each log line; a
// container that stops running ends the wait at once.
func (e *Environment) waitReady(ctx context.Context, svc *Service, c *Container) error {
	opts := readyPolling
	var stopped atomic.Bool // the log stream ended: the container stopped
	if f, ok := e.eng.(logFollower); ok {
		wake := make(chan struct{}, 1)
		poke := func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
		fctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			if err := f.FollowLogs(fctx, c.ID, func(string) { poke() }); err == nil {
				stopped.Store(true)
			}
			poke()
		}()
		opts.Wake = wake
	}
	probe := svc.readyProbe(c)
	if probe == nil {
		return healthcheck.Wait(ctx, healthcheck.Func("container running", func(ctx context.Context) error {
			return e.checkRunning(ctx, c.ID)
		}), opts)
	}
	defer closeProbe(probe)
	var lastInspect time.Time
	return healthcheck.Wait(ctx, healthcheck.Func(probe.String(), func(ctx context.Context) error {
		err := probe.Check(ctx)
		if err == nil || (time.Since(lastInspect) < 500*time.Millisecond && !stopped.Load()) {
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
	}), opts)
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
	e.mu.Unlock()
	p, err := e.createOrAdoptPod(ctx, name, svc.ports, "per-test")
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
