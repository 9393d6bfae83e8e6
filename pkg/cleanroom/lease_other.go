//go:build !unix

package cleanroom

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"
)

// Without flock(2), test processes cannot share a pod safely: each process
// keeps its own pod and removes it in Close.

func lockDir() (string, error) {
	return "", errors.New("sharing a pod across test processes needs flock(2), which this platform lacks")
}

func privateDir(string) error { return errors.New("not supported") }

type leaseFiles struct{ dir, pod string }

func (l leaseFiles) reaperLog() string                                      { return "" }
func (l leaseFiles) suiteLock() string                                      { return "" }
func (l leaseFiles) withSuiteLock(_ context.Context, fn func() error) error { return fn() }
func (l leaseFiles) countLive() int                                         { return 0 }
func (l leaseFiles) liveRuns() []string                                     { return nil }
func (l leaseFiles) register(string) (*os.File, error)                      { return nil, errors.New("not supported") }
func (l leaseFiles) scan() (live, dead []string)                            { return nil, nil }
func (l leaseFiles) reaperAlive() bool                                      { return false }
func (l leaseFiles) idleSince() time.Time                                   { return time.Time{} }
func (l leaseFiles) setIdle(time.Time)                                      {}
func (l leaseFiles) holdReaperLock() (*os.File, error)                      { return nil, errors.New("not supported") }
func detach() *syscall.SysProcAttr                                          { return nil }

func (l leaseFiles) tidy(bool) {}

func (l leaseFiles) settings(def reaperSettings) reaperSettings { return def }
func (l leaseFiles) writeSettings(reaperSettings) error         { return nil }
func (l leaseFiles) reaperState() (int, time.Duration)          { return 0, 0 }

const leasesSupported = false

// processAlive: without a way to ask here, every process counts as alive
// (its pods are not judged stale).
func processAlive(int) bool { return true }

const oNoFollow = 0

func signalReaper(int) error { return errors.New("not supported") }
