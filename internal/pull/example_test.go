package pull_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/pull"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// fakePuller reports events as an engine would, then ends with err; with
// hang it goes quiet until the pull is given up.
type fakePuller struct {
	events []podman.PullEvent
	hang   bool
	err    error
}

func (f fakePuller) Pull(ctx context.Context, ref string, progress func(podman.PullEvent)) error {
	for _, ev := range f.events {
		progress(ev)
	}
	if f.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return f.err
}

// Off a terminal, a pull writes one summary line when it ends.
func ExampleWithProgress() {
	p := fakePuller{events: []podman.PullEvent{
		{Status: "Pulling fs layer", Layer: "aaaaaaaaaaaa1111"},
		{Status: "Pulling fs layer", Layer: "bbbbbbbbbbbb2222"},
		{Status: "Downloading", Layer: "aaaaaaaaaaaa1111", Current: 1_000_000, Total: 30_000_000},
		{Status: "Downloading", Layer: "bbbbbbbbbbbb2222", Current: 500_000, Total: 2_000_000},
		{Status: "Download complete", Layer: "bbbbbbbbbbbb2222"},
		{Status: "Download complete", Layer: "aaaaaaaaaaaa1111"},
	}}
	var out bytes.Buffer
	err := pull.WithProgress(context.Background(), p, "docker.io/library/redis:7", pull.Options{Output: &out})
	summary, _, _ := strings.Cut(out.String(), " in ") // the rest is how long it took
	fmt.Println(summary, err)
	// Output: cleanroom: pulled docker.io/library/redis:7 (2 layers, 32.0 MB) <nil>
}

// A pull that reports no progress for Options.Stall fails with an error
// that names the image and the registry.
func ExampleWithProgress_stall() {
	p := fakePuller{hang: true}
	err := pull.WithProgress(context.Background(), p, "registry.example.com/team/api:1.4", pull.Options{Stall: 200 * time.Millisecond})
	fmt.Println(err)
	// Output: pull registry.example.com/team/api:1.4: no progress for 200ms from registry registry.example.com: the pull stalled; check the network and the registry, or pull it yourself: podman pull registry.example.com/team/api:1.4
}

// The engine's error keeps its meaning (here, errors.Is ErrNotFound) and
// gains the registry's name.
func ExampleWithProgress_notFound() {
	p := fakePuller{err: &podman.APIError{Op: "pull docker.io/library/redis:0.1", StatusCode: 404, Message: "manifest unknown"}}
	err := pull.WithProgress(context.Background(), p, "docker.io/library/redis:0.1", pull.Options{})
	fmt.Println(err)
	fmt.Println(errors.Is(err, podman.ErrNotFound))
	// Output:
	// pull docker.io/library/redis:0.1: manifest unknown (HTTP 404) (registry docker.io)
	// true
}

// Pull through the engine, with progress where the library reports it
// (stderr, quiet under `go test` without -v).
func ExampleOutput() {
	ctx := context.Background()
	c, err := podman.Connect(ctx, podman.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	out, terminal := pull.Output()
	opts := pull.Options{Timeout: 5 * time.Minute, Output: out, Terminal: terminal}
	if err := pull.WithProgress(ctx, c, "docker.io/library/postgres:16", opts); err != nil {
		log.Fatal(err)
	}
}
