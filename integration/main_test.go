// Package integration tests Cleanroom against a real Podman service and real
// PostgreSQL and Redis containers. Run `make test` (or `scripts/setup-podman.sh
// && scripts/build-images.sh` once, then `go test ./integration/...`). A
// missing Podman service is a failure here, never a skip.
package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// Images used by the tests; the defaults are built by scripts/build-images.sh
// (this machine reaches no registry) and setup-podman.sh (busybox).
var (
	postgresImage = envOr("CLEANROOM_POSTGRES_IMAGE", "localhost/cleanroom/postgres:15")
	redisImage    = envOr("CLEANROOM_REDIS_IMAGE", "localhost/cleanroom/redis:7")
	busyboxImage  = envOr("CLEANROOM_BUSYBOX_IMAGE", "localhost/cleanroom/busybox:latest")
	mariadbImage  = envOr("CLEANROOM_MARIADB_IMAGE", "localhost/cleanroom/mariadb:10.11")
	natsImage     = envOr("CLEANROOM_NATS_IMAGE", "localhost/cleanroom/nats:2")
	rabbitmqImage = envOr("CLEANROOM_RABBITMQ_IMAGE", "localhost/cleanroom/rabbitmq:3")
)

// Where the tests reach the ports the engine publishes, and where the engine
// reaches what the tests listen on: both 127.0.0.1 for an engine on this
// machine's network. For an engine whose ports this machine reaches at
// another address (make podman5: an engine in a container; make remote: an
// engine behind ssh), CLEANROOM_BIND_ADDRESS is that address, as it is for
// the library, and CLEANROOM_TEST_HOST_IP is this machine's address as the
// engine sees it.
var (
	bindAddress = envOr("CLEANROOM_BIND_ADDRESS", "127.0.0.1")
	testHostIP  = envOr("CLEANROOM_TEST_HOST_IP", "127.0.0.1")
)

// runLabel marks every object this test binary creates, so that TestMain can
// prove nothing of this run is left behind without touching anything else.
const runLabel = "io.cleanroom.test-run"

var runID = randomHex(6)

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := podman.Connect(ctx, podman.Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration tests need a Podman service (run scripts/setup-podman.sh): %v\n", err)
		return 1
	}
	defer c.Close()
	for _, img := range []string{postgresImage, redisImage, busyboxImage} {
		ok, err := c.ImageExists(ctx, img)
		if err != nil || !ok {
			fmt.Fprintf(os.Stderr, "integration tests need image %s (run scripts/build-images.sh): exists=%v err=%v\n", img, ok, err)
			return 1
		}
	}

	code := m.Run()

	if leaked := leftovers(c, map[string]string{runLabel: runID}); leaked != "" {
		fmt.Fprintf(os.Stderr, "FAIL: this test run left objects behind (now removed):\n%s", leaked)
		return 1
	}
	return code
}

// leftovers lists, then removes, pods and containers carrying labels.
func leftovers(c *podman.Client, labels map[string]string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var b strings.Builder
	pods, err := c.ListPods(ctx, labels)
	if err != nil {
		return "list pods: " + err.Error() + "\n"
	}
	for _, p := range pods {
		fmt.Fprintf(&b, "  pod %s\n", p.Name)
		_ = c.RemovePod(ctx, p.ID)
	}
	cts, err := c.ListContainers(ctx, labels)
	if err != nil {
		return b.String() + "list containers: " + err.Error() + "\n"
	}
	for _, ct := range cts {
		fmt.Fprintf(&b, "  container %s\n", strings.Join(ct.Names, ","))
		_ = c.RemoveContainer(ctx, ct.ID)
	}
	return b.String()
}

// connect returns a client of the default service, closed with the test.
func connect(tb testing.TB) *podman.Client {
	tb.Helper()
	return connectTo(tb, "")
}

// connectTo is connect for the engine at uri ("" resolves it as the
// library does).
func connectTo(tb testing.TB, uri string) *podman.Client {
	tb.Helper()
	c, err := podman.Connect(context.Background(), podman.Options{URI: uri})
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// testLabels are the labels of objects made by test t. They name this test
// process as the owner, as the library does for a pod of its own, so that a
// `cleanroom gc` that another test (the demo, say) runs meanwhile sees the
// object as in use, not as left over.
func testLabels(t *testing.T) map[string]string {
	host, _ := os.Hostname()
	return map[string]string{
		runLabel: runID, "io.cleanroom.test": t.Name(),
		labels.Role: "own", labels.Host: host, labels.PID: strconv.Itoa(os.Getpid()),
	}
}

// name returns a unique engine name for an object of this test.
func name(prefix string) string { return "crit-" + prefix + "-" + randomHex(4) }

// newPod creates a labelled pod that is removed when the test ends.
func newPod(t *testing.T, c *podman.Client, spec podman.PodSpec) string {
	t.Helper()
	if spec.Name == "" {
		spec.Name = name("pod")
	}
	if spec.Labels == nil {
		spec.Labels = testLabels(t)
	}
	if _, err := c.CreatePod(context.Background(), spec); err != nil {
		t.Fatalf("create pod: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.RemovePod(ctx, spec.Name); err != nil {
			t.Errorf("remove pod %s: %v", spec.Name, err)
		}
	})
	return spec.Name
}

// startIn creates and starts a labelled container in pod.
func startIn(t *testing.T, c *podman.Client, pod string, spec podman.ContainerSpec) string {
	t.Helper()
	ctx := context.Background()
	spec.Pod = pod
	if spec.Name == "" {
		spec.Name = pod + "-" + randomHex(2)
	}
	if spec.Labels == nil {
		spec.Labels = testLabels(t)
	}
	id, err := c.CreateContainer(ctx, spec)
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	if err := c.StartContainer(ctx, id); err != nil {
		t.Fatalf("start container %s: %v", spec.Name, err)
	}
	return id
}
