package nats_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
	"github.com/cleanroom-go/cleanroom/internal/itest"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
)

// helperEnv makes the test binary a second test process of the suite
// that runs TestHelperHoldsAPrefix only.
const helperEnv = "CLEANROOM_NATS_TEST_HELPER"

// TestHelperHoldsAPrefix runs in the helper process only: a test that
// makes a stream under its prefix, says so on stdout, and runs until its
// stdin closes (or it is killed).
func TestHelperHoldsAPrefix(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("runs as the helper process of TestAnotherProcessSharesTheServerAndHoldsUntilItDies")
	}
	p := cleanroom.NATSPrefix(t)
	js, err := jetstream.New(p.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: p.Name("HELD"), Subjects: []string{p.Subject(">")}}); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("READY %s %s\n", cleanroom.NATSFor(t).Container().ID, p.Name("HELD"))
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

// A second test process of the suite uses the same NATS container; while
// its test runs, a suite-wide reset spares its stream, and once the
// process is killed (SIGKILL: no clean-up ran) the next reset deletes it.
func TestAnotherProcessSharesTheServerAndHoldsUntilItDies(t *testing.T) {
	srv := cleanroom.NATSFor(t)
	helper, f := itest.StartProcess(t, helperEnv, "TestHelperHoldsAPrefix")
	if len(f) != 2 {
		t.Fatalf("the helper process said READY %q", f)
	}
	id, stream := f[0], f[1]
	if id != srv.Container().ID {
		t.Errorf("the helper process uses container %s, this one %s: not shared", id, srv.Container().ID)
	}

	ctx := context.Background()
	nc := connect(t, srv.URL())
	deleted, err := isolate.DeleteUnheld(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(deleted, stream) {
		t.Fatalf("a reset deleted %s, held by a test running in another process", stream)
	}

	helper.Kill()
	// The server notices the dead process's connection at once (the
	// kernel closes it); allow it a moment.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		deleted, err := isolate.DeleteUnheld(ctx, nc)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(deleted, stream) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s of the killed process survived resets for 10 s; left: %v", stream, streamNames(t, jetStream(t, nc)))
		}
	}
}
