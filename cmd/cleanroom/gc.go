package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/internal/lease"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

var gcCommand = &command{
	name:     "gc",
	synopsis: "[--all] [--suite NAME] [--run ID] [--snapshots] [--dry-run]",
	summary: "remove stale cleanroom pods: no test process or reaper holds them;\n" +
		"            nothing without the label io.cleanroom.managed is ever touched",
}

var cleanCommand = &command{
	name:     "clean",
	synopsis: "[--suite NAME] [--run ID] [--snapshots] [--dry-run]",
	summary:  "remove every cleanroom pod and container, held or not (gc --all)",
}

func init() {
	gcCommand.run = func(ctx context.Context, e *env, args []string) error { return runGC(ctx, e, gcCommand, args) }
	cleanCommand.run = func(ctx context.Context, e *env, args []string) error { return runGC(ctx, e, cleanCommand, args) }
}

func runGC(ctx context.Context, e *env, cmd *command, args []string) error {
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	all := cmd == cleanCommand
	if !all {
		fs.BoolVar(&all, "all", false, "every object labelled io.cleanroom.managed, stale or not")
	}
	dry := fs.Bool("dry-run", false, "list what would be removed, remove nothing")
	snaps := fs.Bool("snapshots", false, "also remove the snapshot images (start-up state of services); with --suite, --run: that suite's, those that run built")
	var sc scope
	fs.StringVar(&sc.suite, "suite", "", "only the objects of suite `NAME` (label io.cleanroom.suite)")
	fs.StringVar(&sc.run, "run", "", "only the objects that test processes of run `ID` made (CLEANROOM_RUN_ID; a run named ID/… counts too)")
	if err := parseFlags(e, cmd, fs, args, 0); err != nil {
		return err
	}
	return withEngine(ctx, e, func(ctx context.Context, c *podman.Client) error {
		sc.all, sc.dry = all, *dry
		if err := gc(ctx, c, sc, e.stdout); err != nil {
			return err
		}
		if *snaps {
			return gcSnapshots(ctx, c, sc, e.stdout)
		}
		return nil
	})
}

// scope is what gc looks at.
type scope struct {
	all, dry   bool   // every managed object, not only stale pods; remove nothing
	suite, run string // only this suite's; only what this run made ("": any)
}

// ofRun says whether an object with these labels was made in the run.
func (sc scope) ofRun(l map[string]string) bool { return sc.ofRunID(l[labels.RunID]) }

// ofRunID says whether run id is the run gc looks at, or a run under it.
func (sc scope) ofRunID(id string) bool {
	return sc.run == "" || id == sc.run || strings.HasPrefix(id, sc.run+"/")
}

// gc removes stale pods (all managed pods and containers with all), and
// reports each object; failures are aggregated.
func gc(ctx context.Context, c *podman.Client, sc scope, out io.Writer) error {
	all, dry := sc.all, sc.dry
	verb := "removed"
	if dry {
		verb = "would remove"
	}
	filter := map[string]string{podman.LabelManaged: "true"}
	if sc.suite != "" {
		filter[labels.Suite] = sc.suite
	}
	var errs []error
	pods, err := c.ListPods(ctx, filter)
	if err != nil {
		return err
	}
	inPod := map[string]bool{}
	for _, p := range pods {
		inPod[p.ID] = true // out of scope too: its containers go with it or stay with it
		if !sc.ofRun(p.Labels) {
			continue
		}
		why := "--all"
		if !all {
			stale, reason := lease.Stale(c.Endpoint().URI, p, 0)
			if !stale {
				continue
			}
			why = reason
		}
		if dry {
			fmt.Fprintf(out, "%s pod %s (%d containers; %s)\n", verb, p.Name, len(p.Containers), why)
			continue
		}
		// Looked for first: the reaper may notice the removal and end on
		// its own before it is asked to.
		var reaper lease.Reaper
		if p.Labels[labels.Role] == "suite" {
			reaper, _ = lease.FindReaper(c.Endpoint().URI, p.Name)
		}
		if err := c.RemovePod(ctx, p.ID); err != nil && !errors.Is(err, podman.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(out, "%s pod %s (%d containers; %s)\n", verb, p.Name, len(p.Containers), why)
		// Its reaper has nothing left to watch: it ends (unless test
		// processes still hold the suite), and a later run starts one
		// with its own settings.
		switch err := reaper.End(5 * time.Second); {
		case err != nil:
			fmt.Fprintf(out, "  %v\n", err)
		case reaper.Alive:
			fmt.Fprintf(out, "  ended its reaper%s\n", pidNote(reaper.PID))
		}
	}
	if !all {
		return errors.Join(errs...)
	}
	cts, err := c.ListContainers(ctx, filter)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, ct := range cts {
		if inPod[ct.Pod] || ct.IsInfra || !sc.ofRun(ct.Labels) {
			continue // went with its pod (or goes with one made meanwhile)
		}
		if !dry {
			if err := c.RemoveContainer(ctx, ct.ID); err != nil && !errors.Is(err, podman.ErrNotFound) {
				errs = append(errs, err)
				continue
			}
		}
		fmt.Fprintf(out, "%s container %s\n", verb, strings.Join(ct.Names, ","))
	}
	return errors.Join(errs...)
}

// gcSnapshots removes the snapshot images (label io.cleanroom.snapshot):
// all of them, or those of one suite (--suite), or those one run built
// (--run).
func gcSnapshots(ctx context.Context, c *podman.Client, sc scope, out io.Writer) error {
	dry := sc.dry
	filter := map[string]string{podman.LabelManaged: "true", labels.Snapshot: ""}
	if sc.suite != "" {
		filter[labels.Suite] = sc.suite
	}
	imgs, err := c.ListImages(ctx, filter)
	if err != nil {
		return err
	}
	var errs []error
	for _, img := range imgs {
		// A snapshot is of the run that built it: --run removes what the
		// test processes of one run left for later runs.
		if !sc.ofRunID(img.Labels[labels.BuiltIn]) {
			continue
		}
		name := img.ID[:12]
		if len(img.Names) > 0 {
			name = img.Names[0]
		}
		if dry {
			fmt.Fprintf(out, "would remove snapshot %s\n", name)
			continue
		}
		err := c.RemoveImage(ctx, img.ID)
		switch {
		case errors.Is(err, podman.ErrConflict):
			fmt.Fprintf(out, "kept snapshot %s: containers run from it\n", name)
		case err != nil && !errors.Is(err, podman.ErrNotFound):
			errs = append(errs, err)
		default:
			fmt.Fprintf(out, "removed snapshot %s\n", name)
		}
	}
	return errors.Join(errs...)
}

func pidNote(pid int) string {
	if pid == 0 {
		return ""
	}
	return fmt.Sprintf(" (pid %d)", pid)
}
