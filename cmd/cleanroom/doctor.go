package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/containers/common/pkg/config"

	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

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
		bad("podman info: "+err.Error(), "check the service's log; restart it: systemctl --user restart podman.socket (or scripts/setup-podman.sh)")
		return summary(out, problems)
	}
	mode := "rootful"
	if info.Host.Security.Rootless {
		mode = "rootless"
	}
	ok("Podman %s (API %s), %s, %s storage", info.Version.Version, c.APIVersion(), mode, info.Store.GraphDriverName)
	if major, _ := strconv.Atoi(strings.SplitN(info.Version.Version, ".", 2)[0]); major < 4 {
		bad("Podman "+info.Version.Version+" is too old (pods with published ports and the libpod API 4 are needed)", "install Podman 4.3 or newer")
	}

	local := strings.HasPrefix(ep.URI, "unix://")
	runtimeName := info.Host.OCIRuntime.Name
	cgroupMode := info.Host.CgroupVersion
	if local {
		cgroupMode = localCgroupMode()
	}
	ok("OCI runtime %s %s, cgroups %s (%s manager)", runtimeName, firstLine(info.Host.OCIRuntime.Version), cgroupMode, info.Host.CgroupManager)
	if runtimeName == "crun" && (cgroupMode == "v1" || cgroupMode == "hybrid") {
		bad("crun on a cgroup "+cgroupMode+" host fails (\"cgroups in hybrid mode not supported\")",
			"use runc: apt-get install runc, then in "+confDropIn(mode)+":\n[engine]\nruntime = \"runc\"\n(scripts/setup-podman.sh does both)")
	}
	if info.Store.GraphDriverName == "vfs" {
		bad("the vfs storage driver copies every layer: containers start many times slower",
			"use overlay: in ~/.config/containers/storage.conf set [storage] driver = \"overlay\" (then: podman system reset)")
	}

	if local && mode == "rootful" {
		checkUlimits(ok, bad)
	}

	// The images the suite in this directory would start.
	cfg, err := cleanroom.LoadConfig("")
	if err != nil {
		bad(err.Error(), "correct the configuration")
	} else {
		for _, svc := range []cleanroom.Service{cleanroom.Postgres(), cleanroom.Redis()} {
			img := svc.Image()
			if o := cfg.Images[svc.Name()]; o != "" {
				img = o
			}
			exists, err := c.ImageExists(ctx, img)
			switch {
			case err != nil:
				bad("look up image "+img+": "+err.Error(), "check the engine")
			case exists:
				ok("image %s (%s)", img, svc.Name())
			default:
				bad("image "+img+" ("+svc.Name()+") is not in the engine's store; tests will pull it at first use",
					"podman pull "+img+"\n(without a registry: make images, and point CLEANROOM_"+strings.ToUpper(svc.Name())+"_IMAGE at the local image)")
			}
		}
	}
	if dir, err := cleanroom.LockDir(); err != nil {
		bad("lease directory: "+err.Error()+": test processes cannot share a pod", "make $XDG_RUNTIME_DIR (or the temporary directory) writable by this user")
	} else {
		ok("lease directory %s", dir)
	}
	return summary(out, problems)
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

// localCgroupMode tells v2, hybrid or v1 from /sys/fs/cgroup.
func localCgroupMode() string {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/cgroup", &st); err != nil {
		return "unknown"
	}
	const cgroup2Magic = 0x63677270
	if st.Type == cgroup2Magic {
		return "v2"
	}
	if _, err := os.Stat("/sys/fs/cgroup/unified"); err == nil {
		return "hybrid"
	}
	return "v1"
}

// checkUlimits: rootful Podman 4 sets RLIMIT_NOFILE and RLIMIT_NPROC to
// 1048576 in every container unless containers.conf says otherwise; without
// CAP_SYS_RESOURCE that fails where the service's hard limits are lower.
func checkUlimits(ok func(string, ...any), bad func(string, string)) {
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
	if len(missing) > 0 {
		bad("the engine's hard limits are below the 1048576 open files / processes Podman gives every container: containers fail with \"error setting rlimit\"",
			"in /etc/containers/containers.conf.d/50-cleanroom.conf:\n[containers]\ndefault_ulimits = ["+strings.Join(missing, ", ")+"]\n(scripts/setup-podman.sh does it)")
		return
	}
	ok("container ulimits within the engine's limits")
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
