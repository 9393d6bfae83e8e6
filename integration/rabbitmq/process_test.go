package rabbitmq_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
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
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldsAVhost$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	defer func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "READY ") {
				lines <- sc.Text()
				break
			}
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(2 * time.Minute):
		t.Fatal("the helper process did not report its vhost")
	}
	f := strings.Fields(line)
	if len(f) != 3 {
		t.Fatalf("the helper process said %q", line)
	}
	id, vhost := f[1], f[2]
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

	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	waited = true
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
