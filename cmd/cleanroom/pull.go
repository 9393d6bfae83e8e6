package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"

	"golang.org/x/term"

	"github.com/cleanroom-go/cleanroom/internal/pull"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

var pullCommand = &command{
	name:     "pull",
	synopsis: "[IMAGE…]",
	summary: "pull the Postgres and Redis images and every image [cleanroom.images] of\n" +
		"            cleanroom.toml or CLEANROOM_*_IMAGE names (a Generic service's image only when\n" +
		"            named there), or the given ones, with progress",
}

func init() { pullCommand.run = runPull }

func runPull(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("pull", flag.ContinueOnError)
	if err := parseFlags(e, pullCommand, fs, args, -1); err != nil {
		return err
	}
	c, err := connect(ctx, e)
	if err != nil {
		return err
	}
	defer c.Close()
	return pullImages(ctx, c, fs.Args(), e.stdout)
}

// pull fetches every image the suite here declares (or the given ones)
// that the engine lacks, with per-layer progress on a terminal.
func pullImages(ctx context.Context, c *podman.Client, images []string, out io.Writer) error {
	if len(images) == 0 {
		cfg, err := cleanroom.LoadConfig("")
		if err != nil {
			return err
		}
		for _, si := range suiteImages(cfg) {
			if !slices.Contains(images, si.image) {
				images = append(images, si.image)
			}
		}
	}
	terminal := false
	if f, ok := out.(*os.File); ok {
		terminal = term.IsTerminal(int(f.Fd()))
	}
	var errs []error
	for _, img := range images {
		if ok, err := c.ImageExists(ctx, img); err == nil && ok {
			fmt.Fprintf(out, "present %s\n", img)
			continue
		}
		if err := pull.WithProgress(ctx, c, img, pull.Options{Output: out, Terminal: terminal}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
