// Command cleanroom inspects and cleans up what Cleanroom leaves on a Podman
// engine.
//
//	go run github.com/cleanroom-go/cleanroom/cmd/cleanroom clean [--dry-run]
//	go run github.com/cleanroom-go/cleanroom/cmd/cleanroom version
//
// It finds the engine the way the library does: CONTAINER_HOST, the default
// connection of containers.conf, then the rootless and rootful sockets.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

const usage = `usage: cleanroom <command> [flags]

commands:
  clean [--dry-run] [--url URI]   remove every pod and container labelled io.cleanroom.managed
                                  (nothing without that label is touched)
  version                         print the version of this program
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "clean":
		return cmdClean(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "cleanroom", version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "cleanroom: unknown command %q\n%s", args[0], usage)
		return 2
	}
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

func cmdClean(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("clean", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dry := fs.Bool("dry-run", false, "list what would be removed, remove nothing")
	uri := fs.String("url", "", "Podman service URI (default: as the library finds it)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	c, err := podman.Connect(ctx, podman.Options{URI: *uri})
	if err != nil {
		fmt.Fprintf(stderr, "cleanroom clean: %v\n", err)
		return 1
	}
	defer c.Close()
	if err := clean(ctx, c, *dry, stdout); err != nil {
		fmt.Fprintf(stderr, "cleanroom clean: %v\n", err)
		return 1
	}
	return 0
}

// clean removes every managed pod (with its containers), then every managed
// container outside a pod. It reports each object and aggregates failures.
func clean(ctx context.Context, c *podman.Client, dry bool, out io.Writer) error {
	managed := map[string]string{podman.LabelManaged: "true"}
	verb := "removed"
	if dry {
		verb = "would remove"
	}
	var result *multierror.Error
	pods, err := c.ListPods(ctx, managed)
	if err != nil {
		return err
	}
	inPod := map[string]bool{}
	for _, p := range pods {
		inPod[p.ID] = true
		if !dry {
			if err := c.RemovePod(ctx, p.ID); err != nil && !errors.Is(err, podman.ErrNotFound) {
				result = multierror.Append(result, err)
				continue
			}
		}
		fmt.Fprintf(out, "%s pod %s (%d containers)\n", verb, p.Name, len(p.Containers))
	}
	cts, err := c.ListContainers(ctx, managed)
	if err != nil {
		return multierror.Append(result, err).ErrorOrNil()
	}
	for _, ct := range cts {
		if inPod[ct.Pod] {
			continue // went with its pod
		}
		if !dry {
			if err := c.RemoveContainer(ctx, ct.ID); err != nil && !errors.Is(err, podman.ErrNotFound) {
				result = multierror.Append(result, err)
				continue
			}
		}
		fmt.Fprintf(out, "%s container %s\n", verb, strings.Join(ct.Names, ","))
	}
	return result.ErrorOrNil()
}
