package cleanroom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"time"

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

// reaperPoll is how often the reaper looks at the leases.
var reaperPoll = 100 * time.Millisecond

type shared struct {
	files leaseFiles

	// sem is the process's lock on lease: a channel, so that a caller
	// waiting for it (while another takes the suite lock, which the reaper
	// may hold for as long as a pod removal takes) can give up with its
	// context.
	sem   chan struct{}
	lease *os.File // held while this process uses the suite's pods
}

func newShared(files leaseFiles) *shared {
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
	return sh.files.withSuiteLock(ctx, func() error {
		if !sh.files.reaperAlive() {
			e.sweepStale(ctx)
		}
		f, err := sh.files.register(e.run)
		if err != nil {
			return fmt.Errorf("lease on suite %s: %w", e.suite, err)
		}
		sh.lease = f
		if !sh.files.reaperAlive() {
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
	live, _ := files.scan()
	removed := removeDeadRuns(ctx, e.eng, e.suite, live)
	for _, name := range removed {
		e.log.Info("cleanroom: removed a stale pod of a dead test process", "pod", name)
	}
	if len(live) > 0 {
		return
	}
	info, err := e.eng.InspectPod(ctx, e.podName)
	if err != nil || info.Labels[LabelSuite] != e.suite || info.Labels[podman.LabelManaged] != "true" {
		return
	}
	if idle := files.idleSince(); e.cfg.KeepWarm > 0 && !idle.IsZero() && time.Since(idle) < e.cfg.KeepWarm {
		e.log.Info("cleanroom: the suite's pod is kept warm; adopting it", "pod", e.podName, "idle", time.Since(idle).Round(time.Millisecond))
		return
	}
	if err := e.eng.RemovePod(ctx, e.podName); err != nil && !errors.Is(err, podman.ErrNotFound) {
		e.log.Warn("cleanroom: remove stale pod", "pod", e.podName, "error", err)
		return
	}
	files.setIdle(time.Time{})
	e.log.Info("cleanroom: removed the suite's stale pod (no test process held it)", "pod", e.podName)
}

// removeDeadRuns removes the suite's per-process pods (per-test and
// late-service pods) whose process holds no lease, and returns their names.
func removeDeadRuns(ctx context.Context, eng interface {
	ListPods(ctx context.Context, labels map[string]string) ([]podman.PodSummary, error)
	RemovePod(ctx context.Context, nameOrID string) error
}, suite string, live []string) []string {
	pods, err := eng.ListPods(ctx, map[string]string{LabelSuite: suite, podman.LabelManaged: "true"})
	if err != nil {
		return nil
	}
	var removed []string
	for _, p := range pods {
		if p.Labels[LabelRole] == "suite" || slices.Contains(live, p.Labels[LabelRun]) || ownPodAlive(p.Labels) {
			continue
		}
		if err := eng.RemovePod(ctx, p.ID); err == nil || errors.Is(err, podman.ErrNotFound) {
			removed = append(removed, p.Name)
		}
	}
	return removed
}

// ownPodAlive says whether labels are those of a pod of role "own" (a
// process that could not take a lease keeps the suite's services in it)
// whose process still runs on this host. Without a lease, its PID is all
// there is to go by.
func ownPodAlive(labels map[string]string) bool {
	if labels[LabelRole] != "own" || labels[LabelHost] != hostname() {
		return false
	}
	pid, err := strconv.Atoi(labels[LabelPID])
	return err == nil && processAlive(pid)
}

// othersAttached reports whether another live process holds a lease on the
// suite (it may be using the containers). It takes no lock: a process
// registering at this very moment may be missed, and will find the
// container replaced and adopt the new one.
func (e *Environment) othersAttached() bool {
	if e.share == nil {
		return false
	}
	return e.share.files.countLive() > 1
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

// reaperEnv carries the reaper's arguments to the re-executed binary.
const reaperEnv = "CLEANROOM_REAPER"

type reaperArgs struct {
	Dir      string
	Pod      string
	Suite    string
	URI      string
	Identity string
	Grace    time.Duration
	KeepWarm time.Duration
}

// spawnReaper starts the suite's reaper: this very binary, re-executed
// with reaperEnv set, in a session of its own, its output in the lock
// directory. The package's init sends it to runReaper before anything else.
func (e *Environment) spawnReaper() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	args, err := json.Marshal(reaperArgs{
		Dir: e.share.files.dir, Pod: e.podName, Suite: e.suite,
		URI: e.endpoint.URI, Identity: e.endpoint.Identity,
		Grace: e.cfg.GracePeriod, KeepWarm: e.cfg.KeepWarm,
	})
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(e.share.files.reaperLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), reaperEnv+"="+string(args))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detach()
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }() // reap it if it ends before we do
	e.log.Debug("cleanroom: started the suite's reaper", "pid", cmd.Process.Pid, "log", e.share.files.reaperLog())
	return nil
}

// The reaper is this package's one init-time action, and only in a binary
// started with CLEANROOM_REAPER set (by spawnReaper): a test binary becomes
// the reaper before its TestMain runs, whatever that TestMain does, so
// users install nothing and write nothing for it.
func init() {
	if spec, ok := os.LookupEnv(reaperEnv); ok {
		os.Exit(runReaper(spec))
	}
}

func runReaper(spec string) int {
	var a reaperArgs
	if err := json.Unmarshal([]byte(spec), &a); err != nil {
		fmt.Fprintf(os.Stderr, "cleanroom reaper: bad %s: %v\n", reaperEnv, err)
		return 2
	}
	files := leaseFiles{dir: a.Dir, pod: a.Pod}
	lk, err := files.holdReaperLock()
	if err != nil || lk == nil {
		return 0 // another reaper watches this suite
	}
	defer lk.Close()
	lg := log.New(os.Stderr, fmt.Sprintf("cleanroom reaper %s [%d] ", a.Pod, os.Getpid()), log.LstdFlags|log.Lmicroseconds)
	ctx := context.Background()

	var c *podman.Client
	for start := time.Now(); ; time.Sleep(time.Second) {
		c, err = podman.Connect(ctx, podman.Options{URI: a.URI, Identity: a.Identity})
		if err == nil {
			break
		}
		if time.Since(start) > time.Minute {
			lg.Printf("giving up: %v", err)
			return 1
		}
	}
	defer c.Close()
	lg.Printf("watching (grace %s, keep-warm %s)", a.Grace, a.KeepWarm)

	idle := files.idleSince()
	window := max(a.Grace, a.KeepWarm)
	lastLive := -1
	for {
		done := false
		_ = files.withSuiteLock(ctx, func() error {
			live, dead := files.scan()
			if len(dead) > 0 || len(live) != lastLive {
				for _, name := range removeDeadRuns(ctx, c, a.Suite, live) {
					lg.Printf("removed pod %s of a process that is gone", name)
				}
				lastLive = len(live)
			}
			if len(live) > 0 {
				if !idle.IsZero() {
					idle = time.Time{}
					files.setIdle(idle)
				}
				return nil
			}
			if idle.IsZero() {
				idle = time.Now()
				files.setIdle(idle)
				lg.Printf("no test process holds the suite; removing its pod in %s unless one comes", window)
			}
			if time.Since(idle) < window {
				return nil
			}
			info, err := c.InspectPod(ctx, a.Pod)
			switch {
			case errors.Is(err, podman.ErrNotFound):
			case err != nil:
				lg.Printf("inspect pod: %v", err)
				return nil // try again
			case info.Labels[LabelSuite] != a.Suite || info.Labels[podman.LabelManaged] != "true":
				lg.Printf("pod %s is not this suite's; leaving it", a.Pod)
			default:
				rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				err := c.RemovePod(rctx, a.Pod)
				cancel()
				if err != nil && !errors.Is(err, podman.ErrNotFound) {
					lg.Printf("remove pod: %v", err)
					return nil // try again
				}
				lg.Printf("removed pod %s", a.Pod)
			}
			files.setIdle(time.Time{})
			files.tidy(debugEnabled())
			done = true
			return nil
		})
		if done {
			return 0
		}
		time.Sleep(reaperPoll)
	}
}
