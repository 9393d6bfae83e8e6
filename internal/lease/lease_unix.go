//go:build unix

package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Leases are files under the lock directory, held with flock(2): the kernel
// releases a lock when its process dies, however it dies (exit, panic,
// -timeout, Ctrl-C, SIGKILL). For a suite pod P:
//
//	P.lock           the suite's mutex: held briefly to register a lease,
//	                 and by the reaper while it decides and removes
//	P.leases/<run>   one file per test process, locked for its lifetime
//	P.reaper         held by the suite's reaper for its lifetime
//	P.idle           when the last lease went (keep-warm bookkeeping)
//	P.settings       the newest process's grace and keep-warm (the reaper's window)
//	P.reaper.log     the reaper's output

// LockDir returns the per-user directory of lease files: cleanroom under
// $XDG_RUNTIME_DIR, else cleanroom-<uid> under the temporary directory.
// It makes the directory, or checks the one there, with PrivateDir.
func LockDir() (string, error) {
	var dir string
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
		dir = filepath.Join(rt, "cleanroom")
	} else {
		dir = filepath.Join(os.TempDir(), "cleanroom-"+strconv.Itoa(os.Getuid()))
	}
	return dir, PrivateDir(dir)
}

// PrivateDir makes dir (its parent must exist) or checks the one that is
// there: a directory, not a symbolic link, this user's, mode 0700. The
// temporary directory is shared: a directory another user made in advance,
// or a link to one, would let that user see or break the locks.
func PrivateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("lease directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("lease directory: %w", err)
	}
	switch st, _ := fi.Sys().(*syscall.Stat_t); {
	case fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("lease directory %s is a symbolic link; remove it (rm %s)", dir, dir)
	case !fi.IsDir():
		return fmt.Errorf("lease directory %s is not a directory; remove it (rm %s)", dir, dir)
	case st != nil && int(st.Uid) != os.Getuid():
		return fmt.Errorf("lease directory %s belongs to uid %d, not to this user (uid %d); remove it, or set XDG_RUNTIME_DIR to a directory of your own", dir, st.Uid, os.Getuid())
	case fi.Mode().Perm() != 0o700:
		return fmt.Errorf("lease directory %s has mode %04o, want 0700; fix it: chmod 700 %s", dir, fi.Mode().Perm(), dir)
	}
	return nil
}

// Files names a suite's lock files.
type Files struct {
	Dir string // the lease directory (LockDir)
	Pod string // the suite pod's name: every file's name starts with it
}

// SuiteLock is the path of the suite's mutex file, P.lock.
func (l Files) SuiteLock() string  { return filepath.Join(l.Dir, l.Pod+".lock") }
func (l Files) reaperLock() string { return filepath.Join(l.Dir, l.Pod+".reaper") }
func (l Files) leaseDir() string   { return filepath.Join(l.Dir, l.Pod+".leases") }
func (l Files) idleFile() string   { return filepath.Join(l.Dir, l.Pod+".idle") }

// ReaperLog is the path of the reaper's output, P.reaper.log.
func (l Files) ReaperLog() string { return filepath.Join(l.Dir, l.Pod+".reaper.log") }
func (l Files) settingsFile() string {
	return filepath.Join(l.Dir, l.Pod+".settings")
}

// Settings reads the newest registration's settings; def when none.
func (l Files) Settings(def Settings) Settings {
	b, err := os.ReadFile(l.settingsFile())
	if err != nil {
		return def
	}
	var s Settings
	if json.Unmarshal(b, &s) != nil || s.Grace <= 0 {
		return def
	}
	return s
}

// WriteSettings records s as the suite's settings (atomically: the reaper
// reads them without the suite lock's help). Call with the suite lock.
func (l Files) WriteSettings(s Settings) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return writeFileAtomic(l.settingsFile(), b)
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory and a rename, so that a reader sees the old or the new file,
// never a part of one.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// ReaperState reads what the reaper wrote into its lock file: its PID and
// window (0, 0 when there is none).
func (l Files) ReaperState() (pid int, window time.Duration) {
	b, err := os.ReadFile(l.reaperLock())
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "pid":
			pid, _ = strconv.Atoi(v)
		case "window":
			window, _ = time.ParseDuration(v)
		}
	}
	return pid, window
}

// flockFile opens (creating) path and locks it; nb makes it not wait.
// It returns nil, nil when nb is set and someone else holds the lock. A
// lock file may be removed by its last user (the reaper tidies up), so
// after locking it checks that the path still names the locked file, and
// starts over when not.
func flockFile(path string, how int, nb bool) (*os.File, error) {
	if nb {
		how |= syscall.LOCK_NB
	}
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, err
		}
		for {
			err = syscall.Flock(int(f.Fd()), how)
			if !errors.Is(err, syscall.EINTR) {
				break
			}
		}
		if errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, nil
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if sameFile(f, path) {
			return f, nil
		}
		f.Close() // removed (and maybe made anew) while we waited
	}
}

func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// tidy removes the suite's lock files once its pod is gone; called by the
// reaper holding the suite lock and the reaper lock, so that no process is
// registered and none can be until they are released.
func (l Files) tidy(keepLog bool) {
	_ = os.Remove(l.leaseDir()) // only when empty
	_ = os.Remove(l.idleFile())
	_ = os.Remove(l.settingsFile())
	if !keepLog {
		_ = os.Remove(l.ReaperLog())
	}
	_ = os.Remove(l.reaperLock())
	_ = os.Remove(l.SuiteLock())
}

// WithSuiteLock runs fn holding the suite's mutex, waiting for it no
// longer than ctx allows.
func (l Files) WithSuiteLock(ctx context.Context, fn func() error) error {
	f, err := flockFileCtx(ctx, l.SuiteLock(), syscall.LOCK_EX)
	if err != nil {
		return err
	}
	defer f.Close() // closing releases the lock
	return fn()
}

// flockFileCtx is flockFile that waits for the lock while ctx allows:
// flock(2) itself cannot be interrupted by a context, so it tries without
// blocking, more and more rarely (up to every 50 ms).
func flockFileCtx(ctx context.Context, path string, how int) (*os.File, error) {
	delay := time.Millisecond
	for {
		f, err := flockFile(path, how, true)
		if err != nil || f != nil {
			return f, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// CountLive counts the leases held by live processes, without the suite
// lock and without removing anything.
func (l Files) CountLive() int { return len(l.LiveRuns()) }

// LiveRuns lists the runs whose lease a live process holds, without the
// suite lock and without removing anything.
func (l Files) LiveRuns() []string {
	entries, err := os.ReadDir(l.leaseDir())
	if err != nil {
		return nil
	}
	var live []string
	for _, e := range entries {
		f, err := os.OpenFile(filepath.Join(l.leaseDir(), e.Name()), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			continue // gone meanwhile
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); errors.Is(err, syscall.EWOULDBLOCK) {
			live = append(live, e.Name())
		}
		f.Close()
	}
	return live
}

// Register creates and locks the lease file of run; the returned file must
// stay open for as long as the lease is held. Call with the suite lock.
func (l Files) Register(run string) (*os.File, error) {
	if err := os.MkdirAll(l.leaseDir(), 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(l.leaseDir(), run)
	f, err := flockFile(path, syscall.LOCK_EX, true)
	if err != nil {
		return nil, err
	}
	if f == nil {
		return nil, fmt.Errorf("lease %s is held by another process", path)
	}
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "pid %d\nstarted %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	return f, nil
}

// Scan returns the runs whose lease is held by a live process, and removes
// the lease files of dead ones (returned too). Our own lease, held through
// another open file, counts as live.
func (l Files) Scan() (live, dead []string) {
	entries, err := os.ReadDir(l.leaseDir())
	if err != nil {
		return nil, nil
	}
	for _, e := range entries {
		path := filepath.Join(l.leaseDir(), e.Name())
		f, err := flockFile(path, syscall.LOCK_EX, true)
		switch {
		case err != nil:
			live = append(live, e.Name()) // cannot tell: assume alive
		case f == nil:
			live = append(live, e.Name())
		default:
			os.Remove(path)
			f.Close()
			dead = append(dead, e.Name())
		}
	}
	return live, dead
}

// ReaperAlive reports whether a reaper holds the suite's reaper lock.
func (l Files) ReaperAlive() bool {
	// Opened without O_CREAT: asking leaves no file behind once the
	// reaper has tidied up.
	f, err := os.OpenFile(l.reaperLock(), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	return errors.Is(err, syscall.EWOULDBLOCK)
}

// IdleSince reads when the suite went idle; zero when unknown.
func (l Files) IdleSince() time.Time {
	b, err := os.ReadFile(l.idleFile())
	if err != nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	if err != nil {
		return time.Time{}
	}
	return t
}

// SetIdle records t as when the suite went idle (the last lease went); the
// zero t removes the record.
func (l Files) SetIdle(t time.Time) {
	if t.IsZero() {
		os.Remove(l.idleFile())
		return
	}
	_ = os.WriteFile(l.idleFile(), []byte(t.UTC().Format(time.RFC3339Nano)+"\n"), 0o600)
}

// detach makes a spawned reaper independent of the test process: its own
// session, so that neither Ctrl-C nor the end of `go test` reaches it.
func detach() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }

const leasesSupported = true

// processAlive says whether a process with this PID exists.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// holdReaperLock takes the reaper lock for the caller's lifetime; nil, nil
// when another reaper holds it.
func (l Files) holdReaperLock() (*os.File, error) {
	// ReaperAlive, in a test process or in `cleanroom ps`, holds the lock
	// for an instant: try for a while before concluding that another
	// reaper holds it for good.
	for deadline := time.Now().Add(reaperLockPatience); ; time.Sleep(10 * time.Millisecond) {
		f, err := flockFile(l.reaperLock(), syscall.LOCK_EX, true)
		if err != nil || f != nil || time.Now().After(deadline) {
			return f, err
		}
	}
}

// reaperLockPatience is how long a new reaper tries for its lock.
var reaperLockPatience = 300 * time.Millisecond

// oNoFollow makes an open fail on a symbolic link.
const oNoFollow = syscall.O_NOFOLLOW

// signalReaper asks the reaper with this PID to look at its pod now.
func signalReaper(pid int) error { return syscall.Kill(pid, syscall.SIGTERM) }
