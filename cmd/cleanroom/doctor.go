package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containers/common/pkg/config"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/internal/lease"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

var doctorCommand = &command{
	name:    "doctor",
	summary: "check the engine, runtime, limits and images; exit 1 on problems",
}

func init() { doctorCommand.run = runDoctor }

// errProblems makes doctor exit 1 after it printed the problems.
var errProblems = errors.New("problems found (see above)")

func runDoctor(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	if err := parseFlags(e, doctorCommand, fs, args, 0); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	if doctor(ctx, e.url, e.stdout) != 0 {
		return errProblems
	}
	return nil
}

// doctor checks what Cleanroom needs of the engine and prints every
// problem with the command that fixes it. Exit status 0: healthy.
func doctor(ctx context.Context, uri string, out io.Writer) int {
	problems := 0
	ok := func(format string, a ...any) { fmt.Fprintf(out, "ok       "+format+"\n", a...) }
	bad := func(problem, fix string) {
		problems++
		fmt.Fprintf(out, "PROBLEM  %s\n         fix: %s\n", problem, strings.ReplaceAll(fix, "\n", "\n              "))
	}

	eps := podman.Endpoints(podman.Options{URI: uri})
	c, err := podman.Connect(ctx, podman.Options{URI: uri})
	if err != nil {
		var nse *podman.NoServiceError
		if errors.As(err, &nse) {
			bad(fmt.Sprintf("no Podman API service answers (tried %s)", describe(eps)), nse.Hint())
		} else {
			bad(err.Error(), "correct the URI (--url, CLEANROOM_CONNECTION, CONTAINER_HOST)")
		}
		return summary(out, problems)
	}
	defer c.Close()
	ep := c.Endpoint()
	ok("socket %s (%s)", ep.URI, ep.Source)

	info, err := c.Info(ctx)
	if err != nil {
		bad("podman info: "+err.Error(), "check the service's log; restart it: systemctl --user restart podman.socket (rootless) or sudo systemctl restart podman.socket (rootful)")
		return summary(out, problems)
	}
	mode := "rootful"
	if info.Host.Security.Rootless {
		mode = "rootless"
	}
	ok("Podman %s (API %s), %s, on %s, kernel %s", info.Version.Version, c.APIVersion(), mode, distribution(info), orUnknown(info.Host.Kernel))
	if major, _ := strconv.Atoi(strings.SplitN(info.Version.Version, ".", 2)[0]); major < 4 {
		bad("Podman "+info.Version.Version+" is too old (pods with published ports and the libpod API 4 are needed)",
			"install Podman 4.3 or newer: sudo apt-get install podman (Debian 12, Ubuntu 24.04), sudo dnf install podman (Fedora, RHEL 9)")
	}
	ok("network backend %s%s", orUnknown(info.Host.NetworkBackend), rootlessNetwork(info))

	local := strings.HasPrefix(ep.URI, "unix://")
	runtimeName := info.Host.OCIRuntime.Name
	cgroupMode := "cgroup " + info.Host.CgroupVersion
	if local {
		if m := localCgroupMode(); m == "hybrid" {
			cgroupMode = "cgroup v1 (hybrid: v1 controllers, v2 alongside)"
		}
	}
	ok("OCI runtime %s %s, %s, %s manager, %s storage", runtimeName, versionOf(info.Host.OCIRuntime.Version), cgroupMode, info.Host.CgroupManager, info.Store.GraphDriverName)
	// Whether the runtime works here is tried, not guessed from versions:
	// crun 1.8 (Debian 12) fails on a cgroup v1 hybrid host where crun 1.21
	// (Debian 13, Podman 5) works.
	if err := trialPod(ctx, c); err != nil {
		fix := "check the engine's log"
		switch {
		case strings.Contains(err.Error(), "rlimit") && local && mode == "rootful":
			if f := ulimitsFix(); f != "" {
				fix = f
			}
		case runtimeName == "crun" && info.Host.CgroupVersion == "v1":
			fix = "use runc: sudo apt-get install runc (Debian/Ubuntu) or sudo dnf install runc (Fedora/RHEL), then in " + confDropIn(mode) + ":\n[engine]\nruntime = \"runc\""
		}
		bad("the engine cannot start a pod here: "+err.Error(), fix)
	} else {
		ok("a pod starts and is removed (%s)", runtimeName)
	}
	if info.Store.GraphDriverName == "vfs" {
		bad("the vfs storage driver copies every layer: containers start many times slower",
			"use overlay: in ~/.config/containers/storage.conf set [storage] driver = \"overlay\" (then: podman system reset)")
	}

	// The images the suite in this directory would start (see suiteImages).
	cfg, err := cleanroom.LoadConfig("")
	if err != nil {
		bad(err.Error(), "correct the configuration")
	} else {
		for _, si := range suiteImages(cfg) {
			exists, err := c.ImageExists(ctx, si.image)
			switch {
			case err != nil:
				bad("look up image "+si.image+": "+err.Error(), "check the engine")
			case exists:
				ok("image %s (%s)", si.image, si.service)
			default:
				bad("image "+si.image+" ("+si.service+") is not in the engine's store; tests will pull it at first use",
					"podman pull "+si.image+"\n(without a registry: build or load an image of it, and point "+imageFix(si.service)+" at that)")
			}
		}
	}
	if dir, err := lease.LockDir(); err != nil {
		bad("lease directory: "+err.Error()+": test processes cannot share a pod", "make $XDG_RUNTIME_DIR (or the temporary directory) writable by this user")
	} else {
		ok("lease directory %s", dir)
	}
	return summary(out, problems)
}

// trialPod creates, starts and removes a pod: its infra container proves
// that the engine's OCI runtime works on this host.
func trialPod(ctx context.Context, c *podman.Client) error {
	name := fmt.Sprintf("cleanroom-doctor-%d", os.Getpid())
	if _, err := c.CreatePod(ctx, podman.PodSpec{Name: name, Labels: map[string]string{labels.Role: "doctor"}}); err != nil {
		return err
	}
	defer func() { _ = c.RemovePod(context.WithoutCancel(ctx), name) }()
	return c.StartPod(ctx, name)
}

func distribution(info podman.Info) string {
	d := info.Host.Distribution
	if d.Distribution == "" {
		return "an unknown distribution"
	}
	s := d.Distribution + " " + d.Version
	if d.Codename != "" {
		s += " (" + d.Codename + ")"
	}
	return s
}

// rootlessNetwork names the rootless network command of a rootless engine.
func rootlessNetwork(info podman.Info) string {
	if !info.Host.Security.Rootless {
		return ""
	}
	cmd := info.Host.RootlessNetworkCmd
	if cmd == "" {
		cmd = "slirp4netns" // Podman 4 does not say; it has no other
	}
	return ", rootless networking " + cmd
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// versionOf shortens "crun version 1.21\ncommit: …" to "1.21".
func versionOf(s string) string {
	line := firstLine(s)
	if _, v, ok := strings.Cut(line, " version "); ok {
		return v
	}
	return line
}

func summary(out io.Writer, problems int) int {
	if problems == 0 {
		fmt.Fprintln(out, "healthy")
		return 0
	}
	fmt.Fprintf(out, "%d problem(s)\n", problems)
	return 1
}

func describe(eps []podman.Endpoint) string {
	var s []string
	for _, e := range eps {
		s = append(s, fmt.Sprintf("%s (%s)", e.URI, e.Source))
	}
	return strings.Join(s, ", ")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

func confDropIn(mode string) string {
	if mode == "rootless" {
		return "~/.config/containers/containers.conf"
	}
	return "/etc/containers/containers.conf.d/50-cleanroom.conf"
}

// ulimitsFix explains a failed start by the limits: rootful Podman sets
// RLIMIT_NOFILE and RLIMIT_NPROC to 1048576 in every container unless
// containers.conf says otherwise; without CAP_SYS_RESOURCE that fails where
// the service's hard limits are lower. "" when the limits do not explain it.
func ulimitsFix() string {
	const podmanDefault = 1048576
	limits := serviceLimits()
	cfg, err := config.New(nil)
	set := map[string]bool{}
	if err == nil {
		for _, u := range cfg.Containers.DefaultUlimits.Get() {
			name, _, _ := strings.Cut(u, "=")
			set[name] = true
		}
	}
	var missing []string
	for _, l := range []struct{ name, row string }{{"nofile", "Max open files"}, {"nproc", "Max processes"}} {
		hard, found := limits[l.row]
		if !found || hard >= podmanDefault || set[l.name] {
			continue
		}
		value := hard
		if l.name == "nproc" {
			value = hard / 2
		}
		missing = append(missing, fmt.Sprintf("\"%s=%d:%d\"", l.name, value, value))
	}
	if len(missing) == 0 {
		return ""
	}
	return "the engine's hard limits are below the 1048576 open files / processes Podman gives every container; in /etc/containers/containers.conf.d/50-cleanroom.conf:\n[containers]\ndefault_ulimits = [" + strings.Join(missing, ", ") + "]"
}

// serviceLimits reads the hard limits of the running Podman service, or of
// this process when none is found.
func serviceLimits() map[string]int {
	path := "/proc/self/limits"
	if entries, err := os.ReadDir("/proc"); err == nil {
		for _, e := range entries {
			cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err == nil && strings.Contains(string(cmd), "podman") && strings.Contains(string(cmd), "system\x00service") {
				path = filepath.Join("/proc", e.Name(), "limits")
				break
			}
		}
	}
	out := map[string]int{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		for _, row := range []string{"Max open files", "Max processes"} {
			if strings.HasPrefix(line, row) {
				fields := strings.Fields(strings.TrimPrefix(line, row))
				if len(fields) >= 2 {
					if n, err := strconv.Atoi(fields[1]); err == nil {
						out[row] = n
					}
				}
			}
		}
	}
	return out
}
