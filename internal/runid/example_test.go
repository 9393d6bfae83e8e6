package runid_test

import (
	"fmt"
	"os"

	"github.com/cleanroom-go/cleanroom/internal/runid"
)

// A harness that starts test binaries itself names their run with
// CLEANROOM_RUN_ID.
func ExampleID() {
	defer os.Setenv(runid.Env, os.Getenv(runid.Env))
	os.Setenv(runid.Env, "ci-build-4711")
	fmt.Println(runid.ID())
	// Output: ci-build-4711
}

// Without CLEANROOM_RUN_ID, the run is named after the parent process (go
// test), so every call in this process, and every test binary of one
// `go test ./...`, gets the same name.
func ExampleID_parent() {
	defer os.Setenv(runid.Env, os.Getenv(runid.Env))
	os.Unsetenv(runid.Env)
	fmt.Println(runid.ID() == runid.ID())
	// Output: true
}
