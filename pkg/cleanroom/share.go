package cleanroom

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/internal/lease"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// How the processes of one suite share its pod (see lease_unix.go for the
// files):
//
//   - Every process that uses the pod holds a lease, a file it keeps locked
//     for as long as it lives. It takes it under the suite's mutex, before it
//     creates or adopts any pod.
//   - A reaper — the test binary re-executed, in a session of its own —
//     watches the leases. When none is held for the grace period (or the
//     keep-warm window, if longer), it removes the suite pod under the
//     suite's mutex, so that no process can register meanwhile, and exits.
//     Pods only one process used (per-test and late-service pods) go as soon
//     as that process's lease is gone.
//   - A process that finds no reaper sweeps first: with no live lease, the
//     pod is stale and removed, unless it is within its keep-warm window.
//
// The kernel drops a dead process's flock, whatever killed it, so SIGKILL,
// panics and `go test -timeout` all end in the same clean-up. If even the
// reaper is killed, every container's run-time limit (conmon) still ends it.

type shared struct {
	files lease.Files

	// sem is the process's lock on lease: a channel, so that a caller
	// waiting for it (while another takes the suite lock, which the reaper
	// may hold for as long as a pod removal takes) can give up with its
	// context.
	sem   chan struct{}
	lease *os.File // held while this process uses the suite's pods
}

func newShared(files lease.Files) *shared {
	return &shared{files: files, sem: make(chan struct{}, 1)}
}

// ensureLease registers this process's lease, sweeping stale pods and
// starting a reaper when there is none. Cheap after the first call.
func (e *Environment) ensureLease(ctx context.Context) error {
	sh := e.share
	if sh == nil {
		return nil
	}
	select {
	case sh.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("lease on suite %s: %w", e.suite, ctx.Err())
	}
	defer func() { <-sh.sem }()
	if sh.lease != nil {
		return nil
	}
	return sh.files.WithSuiteLock(ctx, func() error {
		if !sh.files.ReaperAlive() {
			e.sweepStale(ctx)
		}
		f, err := sh.files.Register(e.run)
		if err != nil {
			return fmt.Errorf("lease on suite %s: %w", e.suite, err)
		}
		sh.lease = f
		// The reaper's window is the newest process's: a plain run after a
		// keep-warm one is not kept warm.
		if err := sh.files.WriteSettings(lease.Settings{Grace: e.cfg.GracePeriod, KeepWarm: e.cfg.KeepWarm, PID: os.Getpid()}); err != nil {
			e.log.Warn("cleanroom: cannot record the reaper's settings", "error", err)
		}
		if !sh.files.ReaperAlive() {
			if err := e.startReaper(); err != nil {
				// Not fatal: Close still removes what this process made, and
				// conmon's run-time limit bounds the rest.
				e.log.Warn("cleanroom: cannot start the reaper; a killed test process may leave the pod until its run-time limit", "error", err)
			}
		}
		return nil
	})
}

// sweepStale removes what no live process uses: the suite pod when no lease
// is held and it is not kept warm, and the pods of dead processes. Called
// with the suite lock held and no reaper alive.
func (e *Environment) sweepStale(ctx context.Context) {
	files := e.share.files
	live, _ := files.Scan()
	removed := lease.RemoveDeadRuns(ctx, e.eng, e.suite, live)
	for _, name := range removed {
		e.log.Info("cleanroom: removed a stale pod of a dead test process", "pod", name)
	}
	if len(live) > 0 {
		return
	}
	info, err := e.eng.InspectPod(ctx, e.podName)
	if err != nil || info.Labels[labels.Suite] != e.suite || info.Labels[podman.LabelManaged] != "true" {
		return
	}
	if idle := files.IdleSince(); e.cfg.KeepWarm > 0 && !idle.IsZero() && time.Since(idle) < e.cfg.KeepWarm {
		e.log.Info("cleanroom: the suite's pod is kept warm; adopting it", "pod", e.podName, "idle", time.Since(idle).Round(time.Millisecond))
		return
	}
	if err := e.eng.RemovePod(ctx, e.podName); err != nil && !errors.Is(err, podman.ErrNotFound) {
		e.log.Warn("cleanroom: remove stale pod", "pod", e.podName, "error", err)
		return
	}
	files.SetIdle(time.Time{})
	e.log.Info("cleanroom: removed the suite's stale pod (no test process held it)", "pod", e.podName)
}

// othersAttached reports whether another live process holds a lease on the
// suite (it may be using the containers). It takes no lock: a process
// registering at this very moment may be missed, and will find the
// container replaced and adopt the new one.
func (e *Environment) othersAttached() bool {
	if e.share == nil {
		return false
	}
	return e.share.files.CountLive() > 1
}

// releaseLease gives this process's lease back: from now on the reaper
// counts it as gone.
func (e *Environment) releaseLease() {
	if e.share == nil {
		return
	}
	e.share.sem <- struct{}{}
	defer func() { <-e.share.sem }()
	if e.share.lease != nil {
		e.share.lease.Close()
		e.share.lease = nil
	}
}
