package pull

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// scriptedPuller plays events, then waits (hang) or ends with err.
type scriptedPuller struct {
	events []podman.PullEvent
	gap    time.Duration
	hang   bool
	err    error
}

func (s scriptedPuller) Pull(ctx context.Context, ref string, progress func(podman.PullEvent)) error {
	for _, ev := range s.events {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.gap):
		}
		progress(ev)
	}
	if s.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return s.err
}

var layerEvents = []podman.PullEvent{
	{Status: "Pulling from cleanroom/redis", Layer: "7"},
	{Status: "Pulling fs layer", Layer: "aaaaaaaaaaaa1111"},
	{Status: "Pulling fs layer", Layer: "bbbbbbbbbbbb2222"},
	{Status: "Downloading", Layer: "aaaaaaaaaaaa1111", Current: 1_000_000, Total: 30_000_000},
	{Status: "Downloading", Layer: "bbbbbbbbbbbb2222", Current: 500_000, Total: 2_000_000},
	{Status: "Download complete", Layer: "bbbbbbbbbbbb2222"},
	{Status: "Download complete", Layer: "aaaaaaaaaaaa1111"},
}

func TestPullProgressOnATerminal(t *testing.T) {
	var out bytes.Buffer
	err := WithProgress(context.Background(), scriptedPuller{events: layerEvents, gap: 120 * time.Millisecond}, "127.0.0.1:5000/cleanroom/redis:7",
		Options{Output: &out, Terminal: true})
	if err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"pulling 127.0.0.1:5000/cleanroom/redis:7", "aaaaaaaaaaaa  Downloading", "1.0 MB / 30.0 MB", "30.0 MB / 30.0 MB", "\x1b[2K",
		"pulled 127.0.0.1:5000/cleanroom/redis:7 (2 layers, 32.0 MB)"} {
		if !strings.Contains(s, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, s)
		}
	}
}

func TestPullSummaryElsewhere(t *testing.T) {
	var out bytes.Buffer
	if err := WithProgress(context.Background(), scriptedPuller{events: layerEvents}, "docker.io/library/redis:7", Options{Output: &out}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "cleanroom: pulled docker.io/library/redis:7 (2 layers, 32.0 MB) in ") {
		t.Errorf("want one summary line, got %q", out.String())
	}
}

func TestPullStallAndTimeoutNameImageAndRegistry(t *testing.T) {
	begin := time.Now()
	err := WithProgress(context.Background(), scriptedPuller{events: layerEvents[:2], hang: true}, "registry.example:5000/team/app:1",
		Options{Stall: 200 * time.Millisecond, Timeout: time.Minute})
	if err == nil || !strings.Contains(err.Error(), "no progress for 200ms from registry registry.example:5000") || !strings.Contains(err.Error(), "registry.example:5000/team/app:1") {
		t.Errorf("stalled pull: %v", err)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("the stall was noticed after %s", took)
	}

	// Progress keeps coming, but the whole pull is too slow.
	slow := scriptedPuller{events: append(append([]podman.PullEvent{}, layerEvents...), layerEvents...), gap: 50 * time.Millisecond}
	err = WithProgress(context.Background(), slow, "quay.io/x/y:1", Options{Stall: time.Second, Timeout: 150 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "pull timeout (150ms) from registry quay.io") || !strings.Contains(err.Error(), "cleanroom pull quay.io/x/y:1") {
		t.Errorf("slow pull: %v", err)
	}

	failing := scriptedPuller{err: errors.New("pull image nope:1: manifest unknown")}
	err = WithProgress(context.Background(), failing, "nope:1", Options{})
	if err == nil || !strings.Contains(err.Error(), "manifest unknown (registry docker.io)") {
		t.Errorf("failed pull: %v", err)
	}
}

func TestRegistryOf(t *testing.T) {
	for ref, want := range map[string]string{
		"redis:7": "docker.io", "library/redis": "docker.io", "docker.io/library/redis:7": "docker.io",
		"quay.io/a/b": "quay.io", "localhost/cleanroom/postgres:15": "localhost", "127.0.0.1:5000/x:1": "127.0.0.1:5000",
	} {
		if got := registryOf(ref); got != want {
			t.Errorf("registryOf(%q) = %q, want %q", ref, got, want)
		}
	}
}
