package labels_test

import (
	"context"
	"fmt"
	"log"
	"maps"
	"slices"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// The labels a suite pod carries, so that other test processes, the reaper
// and the cleanroom command find it again.
func Example() {
	pod := map[string]string{
		labels.Managed: "true",
		labels.Suite:   "shop-3f2a9c",
		labels.Role:    "suite",
		labels.Version: labels.LibraryVersion(),
	}
	for _, k := range slices.Sorted(maps.Keys(pod)) {
		fmt.Printf("%s=%s\n", k, pod[k])
	}
	// Output:
	// io.cleanroom.managed=true
	// io.cleanroom.role=suite
	// io.cleanroom.suite=shop-3f2a9c
	// io.cleanroom.version=devel
}

// LibraryVersion is the module's version in the binary's build
// information: "devel" in this repository's own tests, the required
// version (v0.4.1, say) in a user's.
func ExampleLibraryVersion() {
	fmt.Println(labels.LibraryVersion())
	// Output: devel
}

// Find the pods of one suite: every label given must match.
func Example_listPods() {
	ctx := context.Background()
	c, err := podman.Connect(ctx, podman.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	pods, err := c.ListPods(ctx, map[string]string{labels.Managed: "true", labels.Suite: "shop-3f2a9c"})
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range pods {
		fmt.Println(p.Name, p.Labels[labels.Role], p.Labels[labels.Run])
	}
}
