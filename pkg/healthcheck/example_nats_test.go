package healthcheck_test

import (
	"context"
	"log"
	"time"

	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
)

// Wait for a NATS server to accept the client protocol, and for its
// JetStream to answer when it has it on.
func ExampleNATS() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	probe := healthcheck.NATS("nats://cleanroom:secret@127.0.0.1:4222")
	if err := healthcheck.Wait(ctx, probe, healthcheck.Options{}); err != nil {
		log.Fatal(err)
	}
}
