package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
)

var versionCommand = &command{
	name:    "version",
	summary: "print the version, from the build information of this binary",
}

func init() { versionCommand.run = runVersion }

func runVersion(_ context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if err := parseFlags(e, versionCommand, fs, args, 0); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, versionLine())
	return nil
}

// versionLine reads the module version Go stamped into the binary
// (v1.2.3 for go install …@v1.2.3, a pseudo-version or "(devel)" for a
// build from a checkout) and, where present, the VCS revision.
func versionLine() string {
	v, extra := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = ", modified"
				}
			}
		}
		if len(rev) >= 12 {
			extra = "revision " + rev[:12] + modified + ", "
		}
	}
	return fmt.Sprintf("cleanroom %s (%s%s, %s/%s)", v, extra, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
