package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// The reaper: one per suite and engine, the test binary re-executed in a
// session of its own (see share.go). It watches the leases of the suite's
// processes and removes the suite pod once none has been held for the
// window: the grace period, or the keep-warm time if longer. The window is
// the newest process's: each process writes its settings when it
// registers, and the reaper reads them again on every look, so a plain run
// after a keep-warm one is not kept warm. The reaper ends when it removed
// the pod, and also when the pod is gone (removed from outside, by
// `cleanroom gc` say) and no process holds a lease: there is nothing left
// to watch. SIGTERM makes it look at once (gc sends it after removing a
// pod).

// reaperPoll is how often the reaper looks at the leases.
var reaperPoll = 100 * time.Millisecond

// reaperEnv carries the reaper's arguments to the re-executed binary.
const reaperEnv = "CLEANROOM_REAPER"

// ReaperArgs tell a reaper (SpawnReaper) which suite pod to watch and how
// to reach its engine; they travel to it as JSON in its environment.
type ReaperArgs struct {
	Dir      string        // the lease directory (LockDir)
	Pod      string        // the suite pod's name
	Suite    string        // the suite's name: the reaper removes only a pod labelled with it
	URI      string        // the Podman service's URI
	Identity string        // ssh key for an ssh URI
	Grace    time.Duration // the spawning process's grace period, until a settings file says otherwise
	KeepWarm time.Duration // the spawning process's keep-warm time, likewise
}

// Settings are what a process asks of the reaper; the newest
// registration's win.
type Settings struct {
	Grace    time.Duration `json:"grace"`     // how long the pod outlives the last lease
	KeepWarm time.Duration `json:"keep_warm"` // how long to keep it warm for the next run; 0: not at all
	PID      int           `json:"pid"`       // of the process that wrote them
}

// Window is how long the reaper keeps the pod once no lease is held: the
// longer of Grace and KeepWarm.
func (s Settings) Window() time.Duration { return max(s.Grace, s.KeepWarm) }

// reaperPodPoll is how often an idle reaper asks the engine whether the
// pod still exists.
var reaperPodPoll = time.Second

// SpawnReaper starts a suite's reaper: this very binary (a test binary),
// re-executed with the reaper's arguments in its environment, in a session
// of its own, its output in the lease directory. This package's init
// sends it to the reaper before anything else runs. It returns the
// reaper's PID.
func SpawnReaper(a ReaperArgs) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	args, err := json.Marshal(a)
	if err != nil {
		return 0, err
	}
	files := Files{Dir: a.Dir, Pod: a.Pod}
	logf, err := os.OpenFile(files.ReaperLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND|oNoFollow, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), reaperEnv+"="+string(args))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detach()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	go func() { _ = cmd.Wait() }() // reap it if it ends before we do
	return cmd.Process.Pid, nil
}

// The reaper is this package's one init-time action, and only in a binary
// started with CLEANROOM_REAPER set (by SpawnReaper): a test binary becomes
// the reaper before its TestMain runs, whatever that TestMain does, so
// users install nothing and write nothing for it.
func init() {
	if spec, ok := os.LookupEnv(reaperEnv); ok {
		os.Exit(runReaper(spec))
	}
}

func runReaper(spec string) int {
	var a ReaperArgs
	if err := json.Unmarshal([]byte(spec), &a); err != nil {
		fmt.Fprintf(os.Stderr, "cleanroom reaper: bad %s: %v\n", reaperEnv, err)
		return 2
	}
	files := Files{Dir: a.Dir, Pod: a.Pod}
	lk, err := files.holdReaperLock()
	if err != nil || lk == nil {
		return 0 // another reaper watches this suite
	}
	defer lk.Close()
	lg := log.New(os.Stderr, fmt.Sprintf("cleanroom reaper %s [%d] ", a.Pod, os.Getpid()), log.LstdFlags|log.Lmicroseconds)
	ctx := context.Background()
	look := make(chan os.Signal, 1)
	signal.Notify(look, syscall.SIGTERM)

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

	settings := files.Settings(Settings{Grace: a.Grace, KeepWarm: a.KeepWarm})
	writeReaperState(lk, settings)
	lg.Printf("watching (grace %s, keep-warm %s)", settings.Grace, settings.KeepWarm)

	idle := files.IdleSince()
	lastLive := -1
	var podID string      // the pod last seen
	var podSeen time.Time // when the engine was last asked
	for {
		done := false
		_ = files.WithSuiteLock(ctx, func() error {
			live, dead := files.Scan()
			if len(dead) > 0 || len(live) != lastLive {
				for _, name := range RemoveDeadRuns(ctx, c, a.Suite, live) {
					lg.Printf("removed pod %s of a process that is gone", name)
				}
				lastLive = len(live)
			}
			if s := files.Settings(settings); s != settings {
				lg.Printf("new settings from process %d: grace %s, keep-warm %s", s.PID, s.Grace, s.KeepWarm)
				settings = s
				writeReaperState(lk, settings)
			}
			if len(live) > 0 {
				if !idle.IsZero() {
					idle = time.Time{}
					files.SetIdle(idle)
				}
				return nil
			}
			if idle.IsZero() {
				idle = time.Now()
				files.SetIdle(idle)
				lg.Printf("no test process holds the suite; removing its pod in %s unless one comes", settings.Window())
			}
			window := settings.Window()
			if time.Since(idle) < window && time.Since(podSeen) < reaperPodPoll {
				return nil
			}
			podSeen = time.Now()
			info, err := c.InspectPod(ctx, a.Pod)
			switch {
			case errors.Is(err, podman.ErrNotFound):
				if time.Since(idle) < window {
					lg.Printf("pod %s is gone and no test process holds the suite: nothing left to watch", a.Pod)
				}
			case err != nil:
				lg.Printf("inspect pod: %v", err)
				return nil // try again
			case info.Labels[labels.Suite] != a.Suite || info.Labels[podman.LabelManaged] != "true":
				lg.Printf("pod %s is not this suite's; leaving it", a.Pod)
			case time.Since(idle) < window:
				if podID != "" && info.ID != podID {
					lg.Printf("pod %s was made anew (%s)", a.Pod, info.ID)
				}
				podID = info.ID
				return nil
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
			// A dead process's request can still make a pod after the
			// sweep at its death (a snapshot builder's, in flight when it
			// was killed): sweep once more before ending.
			for _, name := range RemoveDeadRuns(ctx, c, a.Suite, live) {
				lg.Printf("removed pod %s of a process that is gone", name)
			}
			files.SetIdle(time.Time{})
			files.tidy(debugEnabled())
			done = true
			return nil
		})
		if done {
			return 0
		}
		select {
		case <-look:
			podSeen = time.Time{} // look at the pod now
		case <-time.After(reaperPoll):
		}
	}
}

// writeReaperState writes the reaper's PID and window into its lock file,
// for `cleanroom ps` and `cleanroom gc`.
func writeReaperState(lk *os.File, s Settings) {
	_ = lk.Truncate(0)
	_, _ = lk.WriteAt([]byte(fmt.Sprintf("pid %d\nwindow %s\n", os.Getpid(), s.Window())), 0)
}
