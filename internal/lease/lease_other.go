//go:build !unix

package lease

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"
)

// Without flock(2), test processes cannot share a pod safely: each process
// keeps its own pod and removes it in Close.

// LockDir returns the per-user directory of lease files. This platform has
// none: it always returns an error.
func LockDir() (string, error) {
	return "", errors.New("sharing a pod across test processes needs flock(2), which this platform lacks")
}

// PrivateDir makes or checks a private lease directory; not supported here.
func PrivateDir(string) error { return errors.New("not supported") }

// Files names a suite's lock files; here there are none.
type Files struct {
	Dir string // the lease directory (LockDir)
	Pod string // the suite pod's name: every file's name starts with it
}

// ReaperLog is the path of the reaper's output; "" here (no reaper).
func (l Files) ReaperLog() string { return "" }

// SuiteLock is the path of the suite's mutex file; "" here.
func (l Files) SuiteLock() string { return "" }

// WithSuiteLock runs fn holding the suite's mutex; here it just runs fn.
func (l Files) WithSuiteLock(_ context.Context, fn func() error) error { return fn() }

// CountLive counts the leases held by live processes; always 0 here.
func (l Files) CountLive() int { return 0 }

// LiveRuns lists the runs whose lease a live process holds; none here.
func (l Files) LiveRuns() []string { return nil }

// Register creates and locks the lease file of a run; not supported here.
func (l Files) Register(string) (*os.File, error) { return nil, errors.New("not supported") }

// Scan returns the runs with a live and with a dead lease; none here.
func (l Files) Scan() (live, dead []string) { return nil, nil }

// ReaperAlive reports whether a reaper watches the suite; never here.
func (l Files) ReaperAlive() bool { return false }

// IdleSince reads when the suite went idle; always zero (unknown) here.
func (l Files) IdleSince() time.Time { return time.Time{} }

// SetIdle records when the suite went idle; it does nothing here.
func (l Files) SetIdle(time.Time) {}

func (l Files) holdReaperLock() (*os.File, error) { return nil, errors.New("not supported") }
func detach() *syscall.SysProcAttr                { return nil }

func (l Files) tidy(bool) {}

// Settings reads the newest registration's settings; here always def.
func (l Files) Settings(def Settings) Settings { return def }

// WriteSettings records the suite's settings; it does nothing here.
func (l Files) WriteSettings(Settings) error { return nil }

// ReaperState reads the reaper's PID and window; 0, 0 here (no reaper).
func (l Files) ReaperState() (int, time.Duration) { return 0, 0 }

const leasesSupported = false

// processAlive: without a way to ask here, every process counts as alive
// (its pods are not judged stale).
func processAlive(int) bool { return true }

const oNoFollow = 0

func signalReaper(int) error { return errors.New("not supported") }
