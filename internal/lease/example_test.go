//go:build unix

package lease_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/internal/lease"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// PrivateDir makes a lease directory only this user can enter, and refuses
// one that others could reach.
func ExamplePrivateDir() {
	tmp, err := os.MkdirTemp("", "lease-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "cleanroom")

	fmt.Println(lease.PrivateDir(dir)) // makes it
	fi, _ := os.Stat(dir)
	fmt.Println(fi.Mode().Perm())
	fmt.Println(lease.PrivateDir(dir)) // checks it

	_ = os.Chmod(dir, 0o755)
	fmt.Println(lease.PrivateDir(dir) != nil)
	// Output:
	// <nil>
	// -rwx------
	// <nil>
	// true
}

// A test process holds its lease for as long as it keeps the file open;
// once it is closed (or the process dies), Scan finds the lease dead and
// removes it.
func ExampleFiles() {
	tmp, err := os.MkdirTemp("", "lease-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	files := lease.Files{Dir: tmp, Pod: "cleanroom-shop"}

	var held *os.File
	err = files.WithSuiteLock(context.Background(), func() error {
		held, err = files.Register("run-1")
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(files.LiveRuns(), files.CountLive())

	held.Close() // as the kernel does when the process ends
	live, dead := files.Scan()
	fmt.Println(live, dead, files.CountLive())
	// Output:
	// [run-1] 1
	// [] [run-1] 0
}

// The newest process's settings decide how long the reaper keeps the pod:
// the longer of the grace period and the keep-warm time.
func ExampleFiles_WriteSettings() {
	tmp, err := os.MkdirTemp("", "lease-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	files := lease.Files{Dir: tmp, Pod: "cleanroom-shop"}
	def := lease.Settings{Grace: 5 * time.Second}

	fmt.Println(files.Settings(def).Window()) // none written yet
	if err := files.WriteSettings(lease.Settings{Grace: 5 * time.Second, KeepWarm: 15 * time.Minute}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(files.Settings(def).Window())
	// Output:
	// 5s
	// 15m0s
}

// Deadline is when the reaper removes an idle suite pod.
func ExampleStatus_Deadline() {
	idle := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	st := lease.Status{Known: true, Reaper: true, IdleSince: idle, Window: 15 * time.Minute}
	fmt.Println(st.Deadline())

	st.Live = []string{"run-2"} // a test process holds it again
	fmt.Println(st.Deadline().IsZero())
	// Output:
	// 2026-11-27 10:15:00 +0000 UTC
	// true
}

// Stale never judges a pod that is not Cleanroom's, or one made on another
// host.
func ExampleStale() {
	foreign := podman.PodSummary{Name: "someone-elses"}
	elsewhere := podman.PodSummary{Name: "cleanroom-shop", Labels: map[string]string{
		podman.LabelManaged: "true",
		labels.Host:         "ci-runner-7.example.com",
	}}
	fmt.Println(lease.Stale("unix:///run/podman/podman.sock", foreign, 0))
	fmt.Println(lease.Stale("unix:///run/podman/podman.sock", elsewhere, 0))
	// Output:
	// false not a cleanroom pod
	// false made on host ci-runner-7.example.com
}

// A pod of role "own" lives as long as the process named in its labels.
func ExampleOwnPodAlive() {
	host, _ := os.Hostname()
	own := map[string]string{
		labels.Role: "own",
		labels.Host: host,
		labels.PID:  strconv.Itoa(os.Getpid()),
	}
	fmt.Println(lease.OwnPodAlive(own))
	// Output: true
}

// What this machine's lease files say of a suite pod, as `cleanroom ps`
// shows it.
func ExampleLeases() {
	st := lease.Leases("unix:///run/user/1000/podman/podman.sock", "cleanroom-shop")
	switch {
	case !st.Known:
		fmt.Println("no test process of this machine used it")
	case len(st.Live) > 0:
		fmt.Println("in use by", st.Live)
	case !st.Deadline().IsZero():
		fmt.Println("idle; removed at", st.Deadline().Format(time.Kitchen))
	}
}
