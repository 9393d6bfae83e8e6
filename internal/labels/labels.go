// Package labels names the io.cleanroom.* labels on the pods, containers
// and images Cleanroom makes. They mirror its registry, so that another
// test process, the reaper and the cleanroom command find the objects
// again; cleanup never touches an object without Managed.
package labels

import "github.com/cleanroom-go/cleanroom/pkg/podman"

// Label keys.
const (
	Managed    = podman.LabelManaged        // "true" on everything Cleanroom made
	Suite      = "io.cleanroom.suite"       // suite key
	Run        = "io.cleanroom.run"         // the creating process's run ID
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

// LibraryVersion is written into the Version label of every object.
const LibraryVersion = "0.1.0-dev"
