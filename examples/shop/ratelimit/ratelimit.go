// Package ratelimit is a fixed-window rate limiter on Redis.
package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Limiter allows Limit events per Window and key.
type Limiter struct {
	rdb    *redis.Client
	Limit  int64         // events allowed per key and window
	Window time.Duration // the window's length: a key's count expires this long after its first event
	Prefix string        // key prefix, e.g. "rl:"
}

// New returns a limiter.
func New(rdb *redis.Client, limit int64, window time.Duration) *Limiter {
	return &Limiter{rdb: rdb, Limit: limit, Window: window, Prefix: "rl:"}
}

var incr = redis.NewScript(`
local n = redis.call("INCR", KEYS[1])
if n == 1 then redis.call("PEXPIRE", KEYS[1], ARGV[1]) end
return n`)

// Allow counts one event for key and reports whether it is within the limit.
func (l *Limiter) Allow(ctx context.Context, key string) (bool, error) {
	n, err := incr.Run(ctx, l.rdb, []string{l.Prefix + key}, l.Window.Milliseconds()).Int64()
	if err != nil {
		return false, fmt.Errorf("rate limit %s: %w", key, err)
	}
	return n <= l.Limit, nil
}
