package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/cleanroom-go/cleanroom/bench/workload"
)

// render writes the report: per workload size the modes' medians and their
// overhead over the floor, how overhead grows with the packages, the
// per-test costs, start-up, and the targets with whether this run met them.
func render(runs []*sizeRun, c *costs, reps int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nWritten by `make bench-compare` (bench/cmd/compare) on %s, %s. Do not edit by hand.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), hostInfo())
	fmt.Fprintf(&b, "## The workload\n\nPackages of %d tests. Each test takes a database of its own, cloned from a template with ten migrated tables, and a Redis database; it writes and reads both. Packages run as `go test ./...` runs them (as many at once as there are CPUs), tests in parallel; the test binaries are built beforehand, so no figure includes compiling. All modes use the same images on the same Podman service, in one run. Wall times are medians of %d runs (per-test containers: one run); \"over the floor\" is a mode's median minus the floor's.\n\n", workload.TestsPerPackage, reps)
	for _, r := range runs {
		floor := r.byName(modeFloor).median()
		cold := r.byName(modeCold).median()
		fmt.Fprintf(&b, "### %d packages × %d tests\n\n", r.packages, workload.TestsPerPackage)
		b.WriteString("| mode | wall time (median) | runs | over the floor | ÷ Cleanroom cold | service containers started | peak memory of the containers |\n|---|---|---|---|---|---|---|\n")
		for _, res := range r.results {
			over, ratio := "—", "—"
			if res.name != modeFloor {
				over = fmt.Sprintf("%+.2f s", (res.median() - floor).Seconds())
			}
			if res.name != modeCold && cold > 0 {
				ratio = fmt.Sprintf("%.1f×", res.median().Seconds()/cold.Seconds())
			}
			fmt.Fprintf(&b, "| %s | %.2f s | %s | %s | %s | %d | %.0f MB |\n", res.name, res.median().Seconds(), runsOf(res.walls), over, ratio, res.starts, res.peakMB)
		}
		b.WriteString("\n")
	}
	b.WriteString("Modes:\n\n")
	for _, res := range runs[0].results {
		fmt.Fprintf(&b, "- **%s**: %s.\n", res.name, res.note)
	}
	b.WriteString("\nService containers are counted from Podman's event stream (starts of anything but pods' infra containers, snapshot builders included), in the last timed run; peak memory is the sum over running containers, sampled once a second.\n\n")

	if len(runs) > 1 {
		small, big := runs[0], runs[len(runs)-1]
		fmt.Fprintf(&b, "### Overhead as the packages grow\n\n| mode | over the floor at %d packages | at %d packages | growth |\n|---|---|---|---|\n", small.packages, big.packages)
		for _, name := range []string{modeTCTuned, modeCold, modeSnapshot, modeWarm} {
			o1, o2 := overhead(small, name), overhead(big, name)
			fmt.Fprintf(&b, "| %s | %+.2f s | %+.2f s | %s |\n", name, o1.Seconds(), o2.Seconds(), growth(o1, o2))
		}
		b.WriteString("\n")
	}

	b.WriteString("## What one test pays for its isolation\n\n")
	fmt.Fprintf(&b, "Medians of %d, set-up plus tear-down, against Cleanroom's Postgres (tmpfs, durability off) and Redis, ten-table migration set.\n\n", samples)
	b.WriteString("| operation | median |\n|---|---|\n")
	fmt.Fprintf(&b, "| transaction (BEGIN + ROLLBACK) | %s |\n", ms(median(c.tx)))
	fmt.Fprintf(&b, "| schema with the ten tables, create + drop | %s |\n", ms(median(c.schema)))
	fmt.Fprintf(&b, "| database cloned from the template, create + drop | %s |\n", ms(median(c.template)))
	fmt.Fprintf(&b, "| spare database, take | %s |\n", ms(median(c.take)))
	fmt.Fprintf(&b, "| Redis logical database, lease + release | %s |\n\n", ms(median(c.lease)))

	b.WriteString("## Postgres start-up\n\n| start | container start → ready (median) | with a new pod, first use → ready (median) |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| plain image (initdb on tmpfs) | %s | — |\n", ms(median(c.plainReady)))
	fmt.Fprintf(&b, "| from a snapshot | %s | %s |\n\n", ms(median(c.snapReady)), ms(median(c.snapTotal)))
	if len(c.readyGap) > 0 {
		fmt.Fprintf(&b, "Between the server's own \"ready to accept connections\" log line (its timestamp, from Podman) and the library returning the ready container: %s median, %s at most, over %d starts.\n\n", ms(median(c.readyGap)), ms(maxOf(c.readyGap)), len(c.readyGap))
	}

	if e := c.engine; len(e.podCreate) > 0 {
		sum := median(e.podCreate) + median(e.podStart) + median(e.create) + median(e.start)
		fmt.Fprintf(&b, "The engine's own steps of such a start, each timed alone against Podman (medians of %d; the container runs `sleep`, so no server start is in them):\n\n", len(e.podCreate))
		b.WriteString("| step | median |\n|---|---|\n")
		fmt.Fprintf(&b, "| create a pod that publishes a port | %s |\n", ms(median(e.podCreate)))
		fmt.Fprintf(&b, "| start it (infra container: network namespace, port forwarding) | %s |\n", ms(median(e.podStart)))
		fmt.Fprintf(&b, "| create a container in it | %s |\n", ms(median(e.create)))
		fmt.Fprintf(&b, "| start the container | %s |\n", ms(median(e.start)))
		fmt.Fprintf(&b, "| **sum: no service in a new pod runs sooner** | **%s** |\n\n", ms(sum))
	}

	b.WriteString(criuSection)

	b.WriteString("## Targets\n\n")
	check := func(ok bool, what string) {
		mark := "met"
		if !ok {
			mark = "**not met**"
		}
		fmt.Fprintf(&b, "- %s: %s\n", what, mark)
	}
	r4 := runs[0]
	cold := r4.byName(modeCold).median()
	tc, tcTuned, perTest := r4.byName(modeTC).median(), r4.byName(modeTCTuned).median(), r4.byName(modePerTest).median()
	check(overhead(r4, modeSnapshot) <= 700*time.Millisecond, fmt.Sprintf("snapshot-cold ≤ floor + 0.7 s at %d packages (%+.2f s)", r4.packages, overhead(r4, modeSnapshot).Seconds()))
	check(overhead(r4, modeCold) <= 1500*time.Millisecond, fmt.Sprintf("cold without a snapshot ≤ floor + 1.5 s at %d packages (%+.2f s)", r4.packages, overhead(r4, modeCold).Seconds()))
	check(overhead(r4, modeWarm) <= 200*time.Millisecond, fmt.Sprintf("keep-warm ≤ floor + 0.2 s at %d packages (%+.2f s)", r4.packages, overhead(r4, modeWarm).Seconds()))
	if len(runs) > 1 {
		big := runs[len(runs)-1]
		for _, name := range []string{modeCold, modeSnapshot} {
			o1, o2 := overhead(r4, name), overhead(big, name)
			check(o2.Seconds() <= 1.3*o1.Seconds(), fmt.Sprintf("%s: overhead at %d packages ≤ 1.3× that at %d (%s)", name, big.packages, r4.packages, growth(o1, o2)))
		}
		fmt.Fprintf(&b, "  - testcontainers-go, tuned, for comparison: %s\n", growth(overhead(r4, modeTCTuned), overhead(big, modeTCTuned)))
	}
	check(tc.Seconds() >= 3*cold.Seconds(), fmt.Sprintf("Cleanroom cold ≥ 3× faster than testcontainers-go per package (%.1f×)", tc.Seconds()/cold.Seconds()))
	fmt.Fprintf(&b, "  - against testcontainers-go given Cleanroom's Postgres tuning: %.1f×\n", tcTuned.Seconds()/cold.Seconds())
	check(perTest.Seconds() >= 20*cold.Seconds(), fmt.Sprintf("Cleanroom cold ≥ 20× faster than per-test containers (%.1f×)", perTest.Seconds()/cold.Seconds()))
	check(median(c.snapReady) <= 600*time.Millisecond, fmt.Sprintf("Postgres ready from a snapshot ≤ 0.6 s median (%s)", ms(median(c.snapReady))))
	check(median(c.take) <= 2*time.Millisecond, fmt.Sprintf("taking a spare database ≤ 2 ms median (%s)", ms(median(c.take))))
	return b.String()
}

// overhead is a mode's median over the floor's at one size.
func overhead(r *sizeRun, name string) time.Duration {
	return r.byName(name).median() - r.byName(modeFloor).median()
}

func growth(small, big time.Duration) string {
	if small <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", big.Seconds()/small.Seconds())
}

// runsOf lists the timed runs, in seconds.
func runsOf(walls []time.Duration) string {
	var s []string
	for _, w := range walls {
		s = append(s, fmt.Sprintf("%.2f", w.Seconds()))
	}
	return strings.Join(s, ", ")
}

func maxOf(d []time.Duration) time.Duration {
	var m time.Duration
	for _, x := range d {
		m = max(m, x)
	}
	return m
}

// criuSection reports the checkpoint/restore experiment (issue 13), which
// this program does not repeat: no restore succeeded on this machine kind.
const criuSection = `## Past snapshots: checkpoint/restore of a running Postgres (not used)

Tried on this machine kind on 2026-12-02, by hand (this program does not repeat it): Podman's
` + "`podman container checkpoint --export` / `podman container restore --import --pod`" + ` of a Postgres
that was up and accepting connections, to be set against the snapshot start above. No restore
succeeded, so checkpoint/restore is not used, and snapshots stay the fastest start there is:

- Podman 4.3 with Debian 12's criu 3.17: ` + "`criu check`" + ` fails on kernel 6.18 ("vdso: Unexpected rt vDSO
  area bounds"), so every checkpoint fails.
- Podman 5.4 (crun 1.21, runc 1.1.15) with criu 4.1 (Debian 13): the dump fails on kernels from
  6.16 on ("Can't get 1:16 opt: Operation not supported"), then hung for 11 minutes and left
  CRIU's network lock (an iptables DROP) in the pod's network namespace: the Postgres still ran
  but no TCP connection reached it.
- criu 4.2: the dump fails with "Can't get rlimit 0: Operation not permitted": Postgres runs as
  another user, and this machine grants no process CAP_SYS_RESOURCE.
- In a user namespace (which avoids that): crun cannot checkpoint ("./dev/urandom doesn't have a
  proper root mount"); runc checkpoints (2.1–2.5 s, a 5.5 MB archive) but restoring into a new pod
  fails (the container depends on the old pod's infra container), without --pod is refused for a
  pod's container, and into the same pod fails in CRIU (5 of 5 tries).
- Rootless: CRIU needs root.

`
