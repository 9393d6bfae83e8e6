// Package lease lets the test processes of a suite share its pod and
// clean it up after the last one, however it ends: every process holds a
// flock(2) lease on a file under the user's lease directory for as long as
// it lives, and a reaper (the test binary re-executed, in a session of its
// own) removes the pod once no lease has been held for the window. The
// kernel drops a dead process's lock whatever killed it. Status, Stale and
// FindReaper serve the cleanroom command.
package lease
