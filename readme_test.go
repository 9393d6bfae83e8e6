package readme_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// snippet is one fenced Go block of a Markdown file.
type snippet struct {
	line int // of the opening fence
	code string
}

func goSnippets(t *testing.T, file string) []snippet {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []snippet
	var cur *snippet
	for i, line := range strings.Split(string(src), "\n") {
		switch {
		case cur == nil && strings.TrimSpace(line) == "```go":
			cur = &snippet{line: i + 1}
		case cur != nil && strings.TrimSpace(line) == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.code += line + "\n"
		}
	}
	if cur != nil {
		t.Fatalf("%s:%d: a Go block is never closed", file, cur.line)
	}
	return out
}

// Every Go block of the README is a whole file that compiles against this
// module as it is now (go vet type-checks it, tests included), so the
// README cannot drift from the API.
func TestREADMEGoSnippetsCompile(t *testing.T) {
	snippets := goSnippets(t, "README.md")
	if len(snippets) == 0 {
		t.Fatal("README.md has no Go block; this test looks for ```go fences")
	}
	// Inside the module, so that its packages resolve; a leading dot keeps
	// the directory out of ./... patterns.
	dir, err := os.MkdirTemp(".", ".readme-snippets-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var pkgs []string
	for i, s := range snippets {
		if !strings.HasPrefix(s.code, "package ") {
			t.Errorf("README.md:%d: a Go block must be a whole file, from its package clause on", s.line)
			continue
		}
		sub := filepath.Join(dir, fmt.Sprintf("s%d", i))
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		// A file name that says where the block is, and _test.go so that
		// TestMain and tests type-check too.
		name := filepath.Join(sub, fmt.Sprintf("readme_line_%d_test.go", s.line))
		if err := os.WriteFile(name, []byte(s.code), 0o644); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, "./"+filepath.ToSlash(sub))
	}
	var stderr bytes.Buffer
	cmd := exec.Command("go", append([]string{"vet"}, pkgs...)...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Errorf("README Go blocks do not compile (go vet: %v):\n%s", err, stderr.String())
	}
}
