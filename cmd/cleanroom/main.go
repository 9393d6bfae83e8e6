// Command cleanroom shows and cleans up what Cleanroom runs on a Podman
// engine, and checks that the engine is fit for it.
//
//	go run github.com/cleanroom-go/cleanroom/cmd/cleanroom ps
//	go run github.com/cleanroom-go/cleanroom/cmd/cleanroom gc [--all] [--dry-run]
//	go run github.com/cleanroom-go/cleanroom/cmd/cleanroom doctor
//	go run github.com/cleanroom-go/cleanroom/cmd/cleanroom version
//
// It finds the engine the way the library does: --url, CLEANROOM_CONNECTION,
// connection in cleanroom.toml,
// CONTAINER_HOST, the default connection of containers.conf, then the
// rootless and rootful sockets.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-multierror"
	"golang.org/x/term"

	"github.com/cleanroom-go/cleanroom/internal/kube"
	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/internal/lease"
	"github.com/cleanroom-go/cleanroom/internal/pull"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

const usage = `usage: cleanroom <command> [flags]

commands:
  ps                          suites, pods, services, ages, leases and ports
  gc [--all] [--suite NAME] [--snapshots] [--dry-run]
                              remove stale cleanroom pods: no test process or reaper
                              holds them (--all: every object labelled io.cleanroom.managed;
                              --snapshots: also the snapshot images of start-up state);
                              nothing without that label is ever touched
                              (--suite: only that suite's objects)
  clean [--suite NAME] [--dry-run]
                              the same as gc --all
  pull [IMAGE…]               pull the images the suite here declares (the Postgres and Redis
                              images, [cleanroom.images] of cleanroom.toml, CLEANROOM_*_IMAGE),
                              or the given ones, with progress
  kube [POD]                  the suite pod (default: the only one) as Kubernetes YAML, made by
                              Podman's generator, the password in a Secret
  doctor                      check the engine, runtime, limits and images; exit 1 on problems
  version                     print the version

flags of every command:
  --url URI                   the Podman service (default: as the library finds it)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// defaultConnection is the engine URI the library would use here:
// CLEANROOM_CONNECTION, else connection of cleanroom.toml (found as the
// library finds it); "" leaves it to CONTAINER_HOST and the sockets.
func defaultConnection() string {
	if v := os.Getenv("CLEANROOM_CONNECTION"); v != "" {
		return v
	}
	if cfg, err := cleanroom.LoadConfig(""); err == nil {
		return cfg.Connection
	}
	return ""
}

// run executes one command and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	uri := fs.String("url", defaultConnection(), "Podman service URI")
	dry := fs.Bool("dry-run", false, "list what would be removed, remove nothing")
	all := fs.Bool("all", false, "every object labelled io.cleanroom.managed, stale or not")
	snaps := fs.Bool("snapshots", false, "also remove the snapshot images")
	suite := fs.String("suite", "", "only the objects of this suite (label io.cleanroom.suite)")
	switch cmd {
	case "version":
		fmt.Fprintf(stdout, "cleanroom %s (%s, %s, %s/%s)\n", labels.LibraryVersion, buildRevision(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "ps", "gc", "clean", "doctor", "pull", "kube":
	default:
		fmt.Fprintf(stderr, "cleanroom: unknown command %q\n%s", cmd, usage)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if cmd == "doctor" {
		return doctor(ctx, *uri, stdout)
	}
	c, err := podman.Connect(ctx, podman.Options{URI: *uri})
	if err != nil {
		fmt.Fprintf(stderr, "cleanroom %s: %v\n", cmd, err)
		return 1
	}
	defer c.Close()
	switch cmd {
	case "ps":
		err = ps(ctx, c, stdout)
	case "pull":
		err = pullImages(ctx, c, fs.Args(), stdout)
	case "kube":
		err = kubeYAML(ctx, c, fs.Args(), stdout)
	case "clean":
		err = gc(ctx, c, true, *dry, *suite, stdout)
	default:
		err = gc(ctx, c, *all, *dry, *suite, stdout)
		if err == nil && *snaps {
			err = gcSnapshots(ctx, c, *dry, stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "cleanroom %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func buildRevision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "revision " + s.Value[:12]
			}
		}
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return "module " + bi.Main.Version
		}
	}
	return "development build"
}

var managed = map[string]string{podman.LabelManaged: "true"}

// ps prints one row per pod: its suite, services, age, leases and ports.
func ps(ctx context.Context, c *podman.Client, out io.Writer) error {
	pods, err := c.ListPods(ctx, managed)
	if err != nil {
		return err
	}
	cts, err := c.ListContainers(ctx, managed)
	if err != nil {
		return err
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SUITE\tPOD\tROLE\tSERVICES\tAGE\tLEASES\tPORTS")
	for _, p := range pods {
		var services []string
		for _, ct := range cts {
			if ct.Pod == p.ID && !ct.IsInfra {
				name := ct.Labels[labels.Service]
				if name == "" {
					name = strings.Join(ct.Names, ",")
				}
				services = append(services, name+"("+ct.State+")")
			}
		}
		sort.Strings(services)
		ports := "-"
		if info, err := c.InspectPod(ctx, p.ID); err == nil {
			var ps []string
			for k, a := range info.Ports {
				ps = append(ps, fmt.Sprintf("%s→%s:%d", k, a.IP, a.Port))
			}
			sort.Strings(ps)
			if len(ps) > 0 {
				ports = strings.Join(ps, " ")
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orDash(p.Labels[labels.Suite]), p.Name, orDash(p.Labels[labels.Role]),
			orDash(strings.Join(services, " ")), age(p.Created), leases(c.Endpoint().URI, p), ports)
	}
	if len(pods) == 0 {
		fmt.Fprintln(w, "(no cleanroom pods)")
	}
	return w.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String()
}

// leases describes who holds a pod: live test processes, the reaper, or
// an idle time.
func leases(uri string, p podman.PodSummary) string {
	if h := p.Labels[labels.Host]; h != "" {
		if me, _ := os.Hostname(); h != me {
			return "on " + h
		}
	}
	if p.Labels[labels.Role] != "suite" {
		st := lease.Leases(uri, "cleanroom-"+p.Labels[labels.Suite])
		if slices.Contains(st.Live, p.Labels[labels.Run]) {
			return "its process"
		}
		return "none (stale)"
	}
	st := lease.Leases(uri, p.Name)
	reaper := ""
	if st.ReaperPID != 0 {
		reaper = fmt.Sprintf(" (reaper %d)", st.ReaperPID)
	}
	switch {
	case !st.Known:
		return "unknown"
	case len(st.Live) > 0:
		return fmt.Sprintf("%d process(es)%s", len(st.Live), reaper)
	case !st.Deadline().IsZero():
		return fmt.Sprintf("idle %s, removed in %s%s", time.Since(st.IdleSince).Round(time.Second),
			max(0, time.Until(st.Deadline())).Round(time.Second), reaper)
	case st.Reaper && !st.IdleSince.IsZero():
		return "idle " + time.Since(st.IdleSince).Round(time.Second).String() + reaper
	case st.Reaper:
		return "reaper only" + reaper
	}
	return "none (stale)"
}

// gc removes stale pods (all managed pods and containers with all), and
// reports each object; failures are aggregated.
func gc(ctx context.Context, c *podman.Client, all, dry bool, suite string, out io.Writer) error {
	verb := "removed"
	if dry {
		verb = "would remove"
	}
	filter := map[string]string{podman.LabelManaged: "true"}
	if suite != "" {
		filter[labels.Suite] = suite
	}
	var result *multierror.Error
	pods, err := c.ListPods(ctx, filter)
	if err != nil {
		return err
	}
	inPod := map[string]bool{}
	for _, p := range pods {
		inPod[p.ID] = true
		why := "--all"
		if !all {
			stale, reason := lease.Stale(c.Endpoint().URI, p, 0)
			if !stale {
				continue
			}
			why = reason
		}
		if !dry {
			if err := c.RemovePod(ctx, p.ID); err != nil && !errors.Is(err, podman.ErrNotFound) {
				result = multierror.Append(result, err)
				continue
			}
		}
		fmt.Fprintf(out, "%s pod %s (%d containers; %s)\n", verb, p.Name, len(p.Containers), why)
		if !dry && p.Labels[labels.Role] == "suite" {
			// Its reaper has nothing left to watch: it ends (unless test
			// processes still hold the suite), and a later run starts one
			// with its own settings.
			switch pid, err := lease.EndReaper(c.Endpoint().URI, p.Name, 5*time.Second); {
			case err != nil:
				fmt.Fprintf(out, "  %v\n", err)
			case pid != 0:
				fmt.Fprintf(out, "  ended its reaper (pid %d)\n", pid)
			}
		}
	}
	if !all {
		return result.ErrorOrNil()
	}
	cts, err := c.ListContainers(ctx, filter)
	if err != nil {
		return multierror.Append(result, err).ErrorOrNil()
	}
	for _, ct := range cts {
		if inPod[ct.Pod] || ct.IsInfra {
			continue // went with its pod (or goes with one made meanwhile)
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

// gcSnapshots removes every snapshot image (label io.cleanroom.snapshot).
func gcSnapshots(ctx context.Context, c *podman.Client, dry bool, out io.Writer) error {
	imgs, err := c.ListImages(ctx, map[string]string{podman.LabelManaged: "true", labels.Snapshot: ""})
	if err != nil {
		return err
	}
	var result *multierror.Error
	for _, img := range imgs {
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
			result = multierror.Append(result, err)
		default:
			fmt.Fprintf(out, "removed snapshot %s\n", name)
		}
	}
	return result.ErrorOrNil()
}

// pull fetches every image the suite here declares (or the given ones)
// that the engine lacks, with per-layer progress on a terminal.
func pullImages(ctx context.Context, c *podman.Client, images []string, out io.Writer) error {
	if len(images) == 0 {
		cfg, err := cleanroom.LoadConfig("")
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, svc := range []cleanroom.Service{cleanroom.Postgres(), cleanroom.Redis()} {
			img := svc.Image()
			if o := cfg.Images[svc.Name()]; o != "" {
				img = o
			}
			images = append(images, img)
			seen[svc.Name()] = true
		}
		for name, img := range cfg.Images {
			if !seen[name] {
				images = append(images, img)
			}
		}
	}
	terminal := false
	if f, ok := out.(*os.File); ok {
		terminal = term.IsTerminal(int(f.Fd()))
	}
	var result *multierror.Error
	for _, img := range images {
		if ok, err := c.ImageExists(ctx, img); err == nil && ok {
			fmt.Fprintf(out, "present %s\n", img)
			continue
		}
		if err := pull.WithProgress(ctx, c, img, pull.Options{Output: out, Terminal: terminal}); err != nil {
			result = multierror.Append(result, err)
		}
	}
	return result.ErrorOrNil()
}

// kube writes a suite pod as Kubernetes YAML.
func kubeYAML(ctx context.Context, c *podman.Client, args []string, out io.Writer) error {
	var pod string
	switch len(args) {
	case 1:
		pod = args[0]
	case 0:
		pods, err := c.ListPods(ctx, map[string]string{podman.LabelManaged: "true", labels.Role: "suite"})
		if err != nil {
			return err
		}
		if len(pods) != 1 {
			var names []string
			for _, p := range pods {
				names = append(names, p.Name)
			}
			return fmt.Errorf("name the pod: %d suite pods run (%s); start the suite's services first (keep_warm keeps them)", len(pods), strings.Join(names, ", "))
		}
		pod = pods[0].Name
	default:
		return errors.New("usage: cleanroom kube [POD]")
	}
	y, err := kube.YAML(ctx, c, pod)
	if err != nil {
		return err
	}
	_, err = out.Write(y)
	return err
}
