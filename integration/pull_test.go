package integration

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/pull"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// testRegistry is the distribution registry scripts/setup-registry.sh
// runs on this machine, holding our local images. The Podman 5 engine of
// make podman5 runs in a container: it reaches a read-only copy of the same
// registry at the same address (scripts/setup-podman5.sh).
const testRegistry = "127.0.0.1:5000"

func requireRegistry(t *testing.T) {
	t.Helper()
	c, err := net.DialTimeout("tcp", testRegistry, 2*time.Second)
	if err != nil {
		t.Fatalf("the test registry does not answer on %s (make test starts it: scripts/setup-registry.sh, as root): %v", testRegistry, err)
	}
	c.Close()
}

// removeImage makes sure ref is not in the engine's store.
func removeImage(t *testing.T, c *podman.Client, ref string) {
	t.Helper()
	if err := c.RemoveImage(context.Background(), ref); err != nil && !errors.Is(err, podman.ErrNotFound) {
		t.Fatalf("remove %s: %v", ref, err)
	}
}

// countingPuller counts the progress events that report bytes.
type countingPuller struct {
	*podman.Client
	withBytes atomic.Int64
}

func (p *countingPuller) Pull(ctx context.Context, ref string, progress func(podman.PullEvent)) error {
	return p.Client.Pull(ctx, ref, func(ev podman.PullEvent) {
		if ev.Total > 0 && ev.Current > 0 {
			p.withBytes.Add(1)
		}
		progress(ev)
	})
}

// throttle puts a proxy on port 5001 of this machine's address as the engine
// sees it (marked insecure for the engine by setup-registry.sh, or the
// Podman 5 engine's entrypoint) that forwards to the test registry at rate
// bytes per second, so that a pull lasts long enough for the engine to
// report bytes. It returns the proxy's address.
func throttle(t *testing.T, rate int) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(testHostIP, "5001"))
	if err != nil {
		t.Fatalf("throttling proxy: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			client, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer client.Close()
				server, err := net.Dial("tcp", testRegistry)
				if err != nil {
					return
				}
				defer server.Close()
				go func() { _, _ = io.Copy(server, client) }()
				buf := make([]byte, rate/20)
				for {
					n, err := server.Read(buf)
					if n > 0 {
						if _, werr := client.Write(buf[:n]); werr != nil {
							return
						}
						time.Sleep(50 * time.Millisecond)
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

func TestPullFromARealRegistryShowsProgress(t *testing.T) {
	requireRegistry(t)
	c := connect(t)
	// 64 MB of random bytes at 24 MB/s: a few seconds of download.
	ref := throttle(t, 24<<20) + "/cleanroom/progress:1"
	// Under either name its layers must not be in the store.
	removeImage(t, c, testRegistry+"/cleanroom/progress:1")
	removeImage(t, c, ref)
	t.Cleanup(func() { removeImage(t, c, ref) })

	var out bytes.Buffer
	p := &countingPuller{Client: c}
	if err := pull.WithProgress(context.Background(), p, ref, pull.Options{Output: &out, Terminal: true}); err != nil {
		t.Fatalf("pull: %v", err)
	}
	if p.withBytes.Load() == 0 {
		t.Errorf("the engine reported no per-layer bytes")
	}
	s := out.String()
	if !strings.Contains(s, "pulling "+ref) || !strings.Contains(s, " MB / ") || !strings.Contains(s, "cleanroom: pulled "+ref) {
		t.Errorf("terminal progress:\n%q", s)
	}
	if ok, _ := c.ImageExists(context.Background(), ref); !ok {
		t.Fatalf("%s is not in the store after the pull", ref)
	}

	// Not a terminal: one summary line.
	ref = testRegistry + "/cleanroom/redis:7"
	removeImage(t, c, ref)
	t.Cleanup(func() { removeImage(t, c, ref) })
	out.Reset()
	if err := pull.WithProgress(context.Background(), c, ref, pull.Options{Output: &out}); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "cleanroom: pulled "+ref+" (") {
		t.Errorf("summary: %q", out.String())
	}

	// cleanroom pull, as a user pre-pulls.
	removeImage(t, c, ref)
	outCLI, code := runCLI(t, nil, "pull", ref)
	if code != 0 || !strings.Contains(outCLI, "pulled "+ref) {
		t.Errorf("cleanroom pull (exit %d):\n%s", code, outCLI)
	}
	if outCLI, _ := runCLI(t, nil, "pull", ref); !strings.Contains(outCLI, "present "+ref) {
		t.Errorf("cleanroom pull of a present image:\n%s", outCLI)
	}

	// Without arguments: the Postgres and Redis images and every image the
	// configuration names (a Generic service's here).
	removeImage(t, c, ref)
	outCLI, code = runCLI(t, []string{"CLEANROOM_OBJECT_STORE_IMAGE=" + ref}, "pull")
	if code != 0 || !strings.Contains(outCLI, "pulled "+ref) || !strings.Contains(outCLI, "present "+postgresImage) {
		t.Errorf("cleanroom pull with a configured Generic image (exit %d):\n%s", code, outCLI)
	}
}

func TestServiceImageIsPulledFromTheRegistry(t *testing.T) {
	requireRegistry(t)
	c := connect(t)
	ref := testRegistry + "/cleanroom/busybox:latest"
	removeImage(t, c, ref)
	env, log := newEnv(t, cleanroom.Config{}, cleanroom.Generic("fetched", ref, cleanroom.WithCmd("sleep", "300")))
	if _, err := env.Get(context.Background(), "fetched"); err != nil {
		t.Fatalf("start a service whose image must be pulled: %v", err)
	}
	if !strings.Contains(log.String(), "pulled image") {
		t.Errorf("the pull was not logged:\n%s", log.String())
	}
}

func TestPullOfAMissingImageFailsFast(t *testing.T) {
	requireRegistry(t)
	c := connect(t)
	ref := testRegistry + "/cleanroom/none:1"
	begin := time.Now()
	err := pull.WithProgress(context.Background(), c, ref, pull.Options{})
	if err == nil || !strings.Contains(err.Error(), ref) || !strings.Contains(err.Error(), "registry "+testRegistry) {
		t.Errorf("pull of a missing image: %v", err)
	}
	if took := time.Since(begin); took > 15*time.Second {
		t.Errorf("a missing image took %s to fail", took)
	}
}

func TestStalledPullFailsClearly(t *testing.T) {
	t.Parallel()
	// A "registry" that accepts connections and never says a word.
	l, err := net.Listen("tcp", net.JoinHostPort(testHostIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, conn := range conns {
			conn.Close()
		}
	})
	ref := l.Addr().String() + "/cleanroom/silent:1"
	begin := time.Now()
	err = pull.WithProgress(context.Background(), connect(t), ref, pull.Options{Stall: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "stalled") || !strings.Contains(err.Error(), "registry "+l.Addr().String()) {
		t.Errorf("stalled pull: %v", err)
	}
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("the stall was noticed after %s", took)
	}
}
