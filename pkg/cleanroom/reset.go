package cleanroom

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

// Reset returns service name to an empty state: Postgres truncates every
// user table (RESTART IDENTITY CASCADE) and resets search_path settings;
// Redis flushes every logical database not leased to a test (FLUSHDB on
// each; leases of RedisDB and their data stay); NATS deletes every
// JetStream stream, key-value bucket and object store that no running
// test's NATSPrefix holds; RabbitMQ deletes every test vhost that no
// running test's RabbitMQVhost holds and the queues and exchanges of the
// default vhost; a Generic service runs its WithReset function or
// WithResetCommand.
func (e *Environment) Reset(ctx context.Context, name string) error {
	ent, err := e.lookup(ctx, name, nil)
	if err != nil {
		return err
	}
	c, err := e.acquire(ctx, ent, false, false)
	if err != nil {
		return err
	}
	svc := ent.svc
	switch {
	case svc.reset != nil:
		err = svc.reset(ctx, c)
	case svc.resetCmd != nil:
		var res podman.ExecResult
		res, err = e.eng.Exec(ctx, c.ID, svc.resetCmd)
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("%q exited with %d: %s", strings.Join(svc.resetCmd, " "), res.ExitCode, strings.TrimSpace(string(res.Stderr)))
		}
	default:
		err = errors.New("the service has no reset; give it one with cleanroom.WithReset or cleanroom.WithResetCommand")
	}
	if err != nil {
		return fmt.Errorf("cleanroom: reset %s: %w", name, err)
	}
	return nil
}
