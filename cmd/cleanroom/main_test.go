package main

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
)

// The exit statuses and streams of the command line, for every command:
// no engine is needed, as none of these lines gets as far as dialing.
func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string // substring; "" means stdout must be empty
		stderr string
	}{
		{args: nil, code: 2, stderr: "usage: cleanroom [--url URI] <command>"},
		{args: []string{"-h"}, code: 0, stdout: "global flags (before the command)"},
		{args: []string{"help"}, code: 0, stdout: "commands:"},
		{args: []string{"help", "gc"}, code: 0, stdout: "-dry-run"},
		{args: []string{"frob"}, code: 2, stderr: `unknown command "frob"`},
		{args: []string{"--all", "gc"}, code: 2, stderr: "flag provided but not defined: -all"},
		{args: []string{"--url"}, code: 2, stderr: "flag needs an argument: -url"},
		{args: []string{"gc", "--url", "unix:///x"}, code: 2, stderr: "--url is a global flag: it goes before the command"},
		{args: []string{"version", "extra"}, code: 2, stderr: `unexpected argument "extra"`},
		{args: []string{"kube", "a", "b"}, code: 2, stderr: `unexpected argument "b"`},
		{args: []string{"gc", "--bogus"}, code: 2, stderr: "usage: cleanroom [--url URI] gc [--all]"},
		{args: []string{"clean", "--all"}, code: 2, stderr: "flag provided but not defined: -all"},
		{args: []string{"version"}, code: 0, stdout: "cleanroom "},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code {
			t.Errorf("cleanroom %q: exit %d, want %d\nstdout: %s\nstderr: %s", tc.args, code, tc.code, &stdout, &stderr)
		}
		check := func(stream, got, want string) {
			if want == "" && got != "" || !strings.Contains(got, want) {
				t.Errorf("cleanroom %q: %s %q, want it to contain %q", tc.args, stream, got, want)
			}
		}
		check("stdout", stdout.String(), tc.stdout)
		check("stderr", stderr.String(), tc.stderr)
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	for _, c := range commands {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{c.name, "-h"}, &stdout, &stderr); code != 0 || stderr.Len() != 0 {
			t.Errorf("cleanroom %s -h: exit %d, stderr %q", c.name, code, &stderr)
		}
		if !strings.HasPrefix(stdout.String(), "usage: cleanroom [--url URI] "+c.name) {
			t.Errorf("cleanroom %s -h: %q", c.name, &stdout)
		}
	}
}

// The version comes from the build information Go stamps into the binary:
// what `go version -m` reads from a built cleanroom is what it prints.
func TestVersionIsTheBuildInfo(t *testing.T) {
	bin := t.TempDir() + "/cleanroom"
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	m, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	var mod string
	for _, line := range strings.Split(string(m), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "mod" && f[1] == "github.com/cleanroom-go/cleanroom" {
			mod = f[2]
		}
	}
	if mod == "" {
		t.Fatalf("go version -m names no module version:\n%s", m)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "cleanroom "+mod+" (") {
		t.Errorf("cleanroom version = %q, want the module version %q first", out, mod)
	}
}
