package ratelimit_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/examples/shop/ratelimit"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
)

func TestMain(m *testing.M) {
	cleanroom.Main(m, cleanroom.Postgres(), cleanroom.Redis())
}

func limiter(t *testing.T, limit int64, window time.Duration) *ratelimit.Limiter {
	t.Helper()
	// A logical database of its own, leased for the test, flushed after.
	return ratelimit.New(cleanroom.RedisDB(t), limit, window)
}

func TestAllowsUpToTheLimit(t *testing.T) {
	t.Parallel()
	l := limiter(t, 3, time.Minute)
	var allowed int
	for range 5 {
		ok, err := l.Allow(t.Context(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			allowed++
		}
	}
	if allowed != 3 {
		t.Errorf("allowed %d of 5, want 3", allowed)
	}
}

func TestWindowExpires(t *testing.T) {
	t.Parallel()
	l := limiter(t, 1, 100*time.Millisecond)
	ctx := t.Context()
	if ok, _ := l.Allow(ctx, "bob"); !ok {
		t.Fatal("first event refused")
	}
	if ok, _ := l.Allow(ctx, "bob"); ok {
		t.Fatal("second event in the window allowed")
	}
	time.Sleep(150 * time.Millisecond)
	if ok, err := l.Allow(ctx, "bob"); !ok || err != nil {
		t.Errorf("after the window: %v, %v", ok, err)
	}
}

func TestKeysAreIndependent(t *testing.T) {
	for i := range 20 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			l := limiter(t, 1, time.Minute)
			if ok, err := l.Allow(t.Context(), "same-key"); !ok || err != nil {
				t.Errorf("first event of a fresh key: %v, %v", ok, err)
			}
		})
	}
}
