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

func LockDir() (string, error) {
	return "", errors.New("sharing a pod across test processes needs flock(2), which this platform lacks")
}

func PrivateDir(string) error { return errors.New("not supported") }

type Files struct{ Dir, Pod string }

func (l Files) ReaperLog() string                                      { return "" }
func (l Files) SuiteLock() string                                      { return "" }
func (l Files) WithSuiteLock(_ context.Context, fn func() error) error { return fn() }
func (l Files) CountLive() int                                         { return 0 }
func (l Files) LiveRuns() []string                                     { return nil }
func (l Files) Register(string) (*os.File, error)                      { return nil, errors.New("not supported") }
func (l Files) Scan() (live, dead []string)                            { return nil, nil }
func (l Files) ReaperAlive() bool                                      { return false }
func (l Files) IdleSince() time.Time                                   { return time.Time{} }
func (l Files) SetIdle(time.Time)                                      {}
func (l Files) holdReaperLock() (*os.File, error)                      { return nil, errors.New("not supported") }
func detach() *syscall.SysProcAttr                                     { return nil }

func (l Files) tidy(bool) {}

func (l Files) Settings(def Settings) Settings    { return def }
func (l Files) WriteSettings(Settings) error      { return nil }
func (l Files) ReaperState() (int, time.Duration) { return 0, 0 }

const leasesSupported = false

// processAlive: without a way to ask here, every process counts as alive
// (its pods are not judged stale).
func processAlive(int) bool { return true }

const oNoFollow = 0

func signalReaper(int) error { return errors.New("not supported") }
