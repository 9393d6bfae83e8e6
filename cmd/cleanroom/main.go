// Command cleanroom shows and cleans up what Cleanroom runs on a Podman
// engine, and checks that the engine is fit for it.
//
//	go install github.com/cleanroom-go/cleanroom/cmd/cleanroom@latest
//	cleanroom ps
//	cleanroom gc [--all] [--suite NAME] [--run ID] [--snapshots] [--dry-run]
//	cleanroom doctor
//	cleanroom --url unix:///run/podman/podman.sock ps
//
// Global flags come before the command, the command's own flags after it;
// `cleanroom COMMAND -h` lists them. It finds the engine the way the
// library does: --url, CLEANROOM_CONNECTION, connection in cleanroom.toml,
// CONTAINER_HOST, the default connection of containers.conf, then the
// rootless and rootful sockets.
//
// Exit status: 0 done, 1 failed (or doctor found problems), 2 a usage
// mistake.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// env is what every command gets: the global flags and the output streams.
type env struct {
	url            string // --url, else as the library finds the engine
	stdout, stderr io.Writer
}

// command is one verb of the CLI. run parses args with its own FlagSet
// (see parseFlags) and returns flag.ErrHelp after printing its help, a
// usageError for a mistake in args, or the command's failure.
type command struct {
	name     string
	synopsis string // flags and arguments, for the usage lines
	summary  string
	run      func(ctx context.Context, e *env, args []string) error
}

// usageLine is the command's synopsis with the global flag.
func (c *command) usageLine() string {
	return strings.TrimSpace("cleanroom [--url URI] " + c.name + " " + c.synopsis)
}

// commands lists the verbs in the order the usage shows them.
var commands = []*command{upCommand, psCommand, gcCommand, cleanCommand, pullCommand, kubeCommand, doctorCommand, versionCommand}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	global := flag.NewFlagSet("cleanroom", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	global.StringVar(&e.url, "url", "", "the Podman service `URI` (default: as the library finds it)")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout, global)
			return 0
		}
		fmt.Fprintf(stderr, "cleanroom: %v\n", err)
		usage(stderr, global)
		return 2
	}
	if global.NArg() == 0 {
		usage(stderr, global)
		return 2
	}
	name, rest := global.Arg(0), global.Args()[1:]
	if name == "help" {
		if len(rest) == 1 {
			name, rest = rest[0], []string{"-h"}
		} else {
			usage(stdout, global)
			return 0
		}
	}
	var cmd *command
	for _, c := range commands {
		if c.name == name {
			cmd = c
		}
	}
	if cmd == nil {
		hint := ""
		if strings.HasPrefix(name, "-") {
			hint = " (global flags go before the command, its own flags after it)"
		}
		fmt.Fprintf(stderr, "cleanroom: unknown command %q%s\n", name, hint)
		usage(stderr, global)
		return 2
	}
	if e.url == "" {
		e.url = defaultConnection()
	}
	err := cmd.run(ctx, e, rest)
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "cleanroom %s: %v\nusage: %s\n(cleanroom %s -h lists its flags)\n", cmd.name, ue.msg, cmd.usageLine(), cmd.name)
		return 2
	default:
		fmt.Fprintf(stderr, "cleanroom %s: %v\n", cmd.name, err)
		return 1
	}
}

// usage prints the command list and the global flags.
func usage(w io.Writer, global *flag.FlagSet) {
	fmt.Fprint(w, "usage: cleanroom [--url URI] <command> [flags] [arguments]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nglobal flags (before the command):\n")
	global.SetOutput(w)
	global.PrintDefaults()
	global.SetOutput(io.Discard)
	fmt.Fprint(w, "\ncleanroom <command> -h shows a command's flags.\n")
}

// usageError is a mistake in a command's flags or arguments: exit status 2.
type usageError struct{ msg string }

// Error is the mistake, as the user sees it.
func (u usageError) Error() string { return u.msg }

// parseFlags parses a command's arguments with its own FlagSet: -h prints
// the command's help to stdout and yields flag.ErrHelp; an unknown flag or
// more than maxArgs positional arguments (maxArgs < 0: any number) is a
// usageError.
func parseFlags(e *env, c *command, fs *flag.FlagSet, args []string, maxArgs int) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(e.stdout, "usage: %s\n\n%s\n", c.usageLine(), strings.ReplaceAll(c.summary, "\n            ", "\n"))
			var b strings.Builder
			fs.SetOutput(&b)
			fs.PrintDefaults()
			if b.Len() > 0 {
				fmt.Fprintf(e.stdout, "\nflags:\n%s", b.String())
			}
			return flag.ErrHelp
		}
		if strings.HasSuffix(err.Error(), "not defined: -url") {
			return usageError{"--url is a global flag: it goes before the command (cleanroom --url URI " + c.name + " …)"}
		}
		return usageError{err.Error()}
	}
	if maxArgs >= 0 && fs.NArg() > maxArgs {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(maxArgs))}
	}
	return nil
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

// connect dials the engine for a command; the caller closes the client.
func connect(ctx context.Context, e *env) (*podman.Client, error) {
	return podman.Connect(ctx, podman.Options{URI: e.url})
}

// withEngine runs f with a connection to the engine, both bounded by
// commandTimeout.
func withEngine(ctx context.Context, e *env, f func(context.Context, *podman.Client) error) error {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	c, err := connect(ctx, e)
	if err != nil {
		return err
	}
	defer c.Close()
	return f(ctx, c)
}

// commandTimeout bounds the commands that only talk to the engine; pull
// is bounded by the user (Ctrl-C) instead.
const commandTimeout = 5 * time.Minute
