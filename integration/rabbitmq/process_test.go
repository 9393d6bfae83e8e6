package rabbitmq_test

import (
	"bufio"
	"context"
	"fmt"
	"net/url"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
	"github.com/cleanroom-go/cleanroom/internal/itest"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
)

// helperEnv makes the test binary a second test process of the suite
// that runs TestHelperHoldsAVhost only.
const helperEnv = "CLEANROOM_RABBITMQ_TEST_HELPER"

// TestHelperHoldsAVhost runs in the helper process only: a test that
// declares a queue in a vhost of its own, says so on stdout, and runs
// until its stdin closes (or it is killed).
func TestHelperHoldsAVhost(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("runs as the helper process of TestAnotherProcessSharesTheServerAndHoldsUntilItDies")
	}
	v := cleanroom.RabbitMQVhost(t)
	if _, err := channel(t, dial(t, v.URL)).QueueDeclare("orders", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("READY %s %s\n", cleanroom.RabbitMQFor(t).Container().ID, v.Name)
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

// A second test process of the suite uses the same RabbitMQ container;
// while its test runs, a suite-wide reset spares its vhost (and the queue
// in it), and once the process is killed (SIGKILL: no clean-up ran) the
// next reset deletes it. The reset is the one Environment.Reset runs, on
// the suite's server: the other tests of this package, running in
// parallel, hold their vhosts and are spared as well.
func TestAnotherProcessSharesTheServerAndHoldsUntilItDies(t *testing.T) {
	t.Parallel()
	srv := cleanroom.RabbitMQFor(t)
	helper, f := itest.StartProcess(t, helperEnv, "TestHelperHoldsAVhost")
	if len(f) != 2 {
		t.Fatalf("the helper process said READY %q", f)
	}
	id, vhost := f[0], f[1]
	if id != srv.Container().ID {
		t.Errorf("the helper process uses container %s, this one %s: not shared", id, srv.Container().ID)
	}

	ctx := context.Background()
	admin, err := isolate.NewRabbitMQAdmin(srv.URL(), srv.ManagementURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	reset, err := admin.ResetRabbitMQ(ctx)
	if err != nil {
		t.Fatalf("reset: %v", err)
	}
	if slices.Contains(reset.Vhosts, vhost) {
		t.Fatalf("a reset deleted %s, held by a test running in another process", vhost)
	}
	if !slices.Contains(vhosts(t, srv), vhost) {
		t.Fatalf("vhost %s of the helper process is gone after a reset that did not delete it", vhost)
	}
	var q struct{ Name, Vhost string }
	management(t, srv, "/api/queues/"+url.PathEscape(vhost)+"/orders", &q)
	if q.Name != "orders" || q.Vhost != vhost {
		t.Errorf("the helper's queue after the reset: %+v", q)
	}

	helper.Kill()
	// The server notices the dead process's connection, and drops its
	// exclusive queue, once the kernel has closed it; allow it a moment.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		reset, err := admin.ResetRabbitMQ(ctx)
		if err != nil {
			t.Fatalf("reset: %v", err)
		}
		if slices.Contains(reset.Vhosts, vhost) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vhost %s of the killed process survived resets for 10 s; vhosts: %v", vhost, vhosts(t, srv))
		}
	}
	if slices.Contains(vhosts(t, srv), vhost) {
		t.Errorf("vhost %s is still there after the reset that deleted it", vhost)
	}
}
