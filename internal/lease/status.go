package lease

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// Status is what this machine's lease files say of a pod: for the
// cleanroom CLI (ps, gc).
type Status struct {
	Known     bool      // lease files of the pod's suite exist on this machine
	Live      []string  // runs (test processes) holding a lease now
	Reaper    bool      // a reaper watches the suite
	IdleSince time.Time // when the last lease went, if the reaper noted it
	// ReaperPID and Window are the reaper's process and how long it keeps
	// the pod once no process holds it (grace period or keep-warm), as the
	// reaper wrote them; zero when unknown.
	ReaperPID int
	Window    time.Duration // see ReaperPID
}

// Deadline is when the reaper removes the idle pod; zero while processes
// hold it, or when unknown.
func (s Status) Deadline() time.Time {
	if !s.Reaper || s.IdleSince.IsZero() || s.Window == 0 || len(s.Live) > 0 {
		return time.Time{}
	}
	return s.IdleSince.Add(s.Window)
}

// Leases reports the lease state of the suite pod named pod on the engine
// at engineURI.
func Leases(engineURI, pod string) Status {
	dir, err := EngineDir(engineURI)
	if err != nil {
		return Status{}
	}
	files := Files{Dir: dir, Pod: pod}
	if _, err := os.Stat(files.SuiteLock()); err != nil {
		return Status{}
	}
	st := Status{Known: true, Reaper: files.ReaperAlive(), IdleSince: files.IdleSince()}
	if st.Reaper {
		st.ReaperPID, st.Window = files.ReaperState()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = files.WithSuiteLock(ctx, func() error {
		st.Live, _ = files.Scan()
		return nil
	})
	return st
}

// Stale says whether a managed pod is left over: no test process of its
// suite on this machine holds a lease and no reaper watches it (for a
// suite pod), or the process it was made for is gone (per-test and
// late-service pods). Pods made on other hosts are never judged stale
// here. keepWarm protects an idle suite pod that recently went idle.
func Stale(engineURI string, p podman.PodSummary, keepWarm time.Duration) (bool, string) {
	if p.Labels[podman.LabelManaged] != "true" {
		return false, "not a cleanroom pod"
	}
	if h := p.Labels[labels.Host]; h != "" && h != hostname() {
		return false, "made on host " + h
	}
	if p.Labels[labels.Role] == "own" {
		if OwnPodAlive(p.Labels) {
			return false, "its test process is running (it holds no lease)"
		}
		return true, "its test process is gone"
	}
	suitePod := "cleanroom-" + p.Labels[labels.Suite]
	st := Leases(engineURI, suitePod)
	if p.Labels[labels.Role] != "suite" {
		if slices.Contains(st.Live, p.Labels[labels.Run]) {
			return false, "its test process is running"
		}
		return true, "its test process is gone"
	}
	switch {
	case st.Reaper:
		return false, "its reaper watches it"
	case len(st.Live) > 0:
		return false, "test processes use it"
	case keepWarm > 0 && !st.IdleSince.IsZero() && time.Since(st.IdleSince) < keepWarm:
		return false, "kept warm"
	}
	return true, "no test process or reaper holds it"
}

// Reaper is a suite's reaper as `cleanroom gc` finds it before it removes
// the suite's pod: found first, because once the pod is gone the reaper
// may see that and end on its own before gc asks it to.
type Reaper struct {
	files Files
	PID   int  // the reaper's PID; 0 when it has not said it yet
	Alive bool // a reaper watched the suite when it was looked for
}

// FindReaper looks for the reaper of the suite pod named pod on the engine
// at engineURI.
func FindReaper(engineURI, pod string) (Reaper, error) {
	dir, err := EngineDir(engineURI)
	if err != nil {
		return Reaper{}, err
	}
	r := Reaper{files: Files{Dir: dir, Pod: pod}}
	if r.Alive = r.files.ReaperAlive(); r.Alive {
		r.PID, _ = r.files.ReaperState()
	}
	return r, nil
}

// End is for after the pod is removed: it tells the reaper to look now,
// and waits up to timeout for it to end (it does when no test process
// holds a lease). A reaper that already ended is not an error.
func (r *Reaper) End(timeout time.Duration) error {
	if !r.Alive {
		return nil
	}
	if r.PID == 0 {
		r.PID, _ = r.files.ReaperState()
	}
	if r.PID != 0 && r.files.ReaperAlive() {
		// It polls the pod every second anyway: a lost signal only slows it.
		_ = signalReaper(r.PID)
	}
	for deadline := time.Now().Add(timeout); r.files.ReaperAlive(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("the reaper of %s (pid %d) still runs after %s: test processes still hold the suite", r.files.Pod, r.PID, timeout)
		}
	}
	return nil
}

// engineLockDir is the directory of this user's lease files for the engine
// at uri: leases of one suite on two engines (the same checkout tested
// against a rootful and a rootless engine, say) never meet.
func EngineDir(uri string) (string, error) {
	dir, err := LockDir()
	if err != nil {
		return "", err
	}
	dir = filepath.Join(dir, "engine-"+hash(normalizeURI(uri))[:12])
	return dir, PrivateDir(dir)
}

// normalizeURI spells one engine address one way (unix:/x, unix:///x and
// unix:///x/ are one socket).
func normalizeURI(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return uri
	}
	if u.Scheme == "unix" {
		p := u.Path
		if p == "" {
			p = u.Opaque
		}
		return "unix://" + path.Clean("/"+p)
	}
	return u.String()
}

// RemoveDeadRuns removes the suite's per-process pods (per-test and
// late-service pods) whose process holds no lease, and returns their names.
func RemoveDeadRuns(ctx context.Context, eng interface {
	ListPods(ctx context.Context, labels map[string]string) ([]podman.PodSummary, error)
	RemovePod(ctx context.Context, nameOrID string) error
}, suite string, live []string) []string {
	pods, err := eng.ListPods(ctx, map[string]string{labels.Suite: suite, podman.LabelManaged: "true"})
	if err != nil {
		return nil
	}
	var removed []string
	for _, p := range pods {
		if p.Labels[labels.Role] == "suite" || slices.Contains(live, p.Labels[labels.Run]) || OwnPodAlive(p.Labels) {
			continue
		}
		if err := eng.RemovePod(ctx, p.ID); err == nil || errors.Is(err, podman.ErrNotFound) {
			removed = append(removed, p.Name)
		}
	}
	return removed
}

// OwnPodAlive says whether lbl are the labels of a pod of role "own" (a
// process that could not take a lease keeps the suite's services in it)
// whose process still runs on this host. Without a lease, its PID is all
// there is to go by.
func OwnPodAlive(lbl map[string]string) bool {
	if lbl[labels.Role] != "own" || lbl[labels.Host] != hostname() {
		return false
	}
	pid, err := strconv.Atoi(lbl[labels.PID])
	return err == nil && processAlive(pid)
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// hash is a short stable digest of s.
func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:16]
}

func debugEnabled() bool {
	v := os.Getenv("CLEANROOM_DEBUG")
	return v != "" && v != "0" && v != "false"
}
