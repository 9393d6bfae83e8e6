// Package labels names the io.cleanroom.* labels on the pods, containers
// and images Cleanroom makes. They mirror its registry, so that another
// test process, the reaper and the cleanroom command find the objects
// again; cleanup never touches an object without Managed.
package labels

import (
	"runtime/debug"
	"sync"

	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// Label keys.
const (
	Managed    = podman.LabelManaged        // "true" on everything Cleanroom made
	Suite      = "io.cleanroom.suite"       // suite key
	Run        = "io.cleanroom.run"         // the creating process's ID (random, one per process)
	RunID      = "io.cleanroom.run-id"      // the creating process's run: one go test ./..., or CLEANROOM_RUN_ID
	PID        = "io.cleanroom.pid"         // the creating process's PID
	Service    = "io.cleanroom.service"     // service name (containers, snapshot images)
	ConfigHash = "io.cleanroom.config-hash" // hash of the service definition (containers)
	CreatedAt  = "io.cleanroom.created-at"  // RFC 3339
	Version    = "io.cleanroom.version"     // library version
	// Role: pods "suite", "own", "service", "per-test", "snapshot", "doctor";
	// containers "service", "snapshot-builder".
	Role   = "io.cleanroom.role"
	Secret = "io.cleanroom.secret" // the services' password (pods), only where it is random per process
	Host   = "io.cleanroom.host"   // host name of the creating process (pods)

	Snapshot  = "io.cleanroom.snapshot"   // snapshot images: the snapshot key
	BaseImage = "io.cleanroom.base-image" // snapshot images: ID of the image it was built from
	BuiltIn   = "io.cleanroom.built-in"   // snapshot images: the run that built it
)

// SnapshotRepository is the image repository snapshot images are
// committed to, one image name per suite and service under it.
const SnapshotRepository = "localhost/cleanroom-snapshot"

// LibraryVersion is written into the Version label of every object: the
// version of this module in the running binary's build information (what
// the user's go.mod requires, such as v0.4.1), "devel" when it is built
// from a checkout of this repository, as its own tests are.
var LibraryVersion = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	return versionIn(bi)
})

// versionIn finds this module's version in a binary's build information.
func versionIn(bi *debug.BuildInfo) string {
	v := ""
	if bi.Main.Path == Module {
		v = bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == Module {
			v = d.Version
			if d.Replace != nil {
				v = d.Replace.Version
			}
		}
	}
	if v == "" || v == "(devel)" {
		return "devel"
	}
	return v
}

// Module is this library's module path.
const Module = "github.com/cleanroom-go/cleanroom"
