package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/internal/lease"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

var psCommand = &command{
	name:    "ps",
	summary: "suites, pods, services, ages, leases and ports",
}

func init() { psCommand.run = runPS }

func runPS(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("ps", flag.ContinueOnError)
	if err := parseFlags(e, psCommand, fs, args, 0); err != nil {
		return err
	}
	return withEngine(ctx, e, func(ctx context.Context, c *podman.Client) error {
		return ps(ctx, c, e.stdout)
	})
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
	case st.Reaper && st.IdleSince.IsZero() && st.Window > 0:
		// The last process has just gone; the reaper has not noted it yet.
		return fmt.Sprintf("no process, removed within %s%s", st.Window.Round(time.Second), reaper)
	case st.Reaper && !st.IdleSince.IsZero():
		return "idle " + time.Since(st.IdleSince).Round(time.Second).String() + reaper
	case st.Reaper:
		return "reaper only" + reaper
	}
	return "none (stale)"
}
