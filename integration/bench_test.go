package integration

import (
	"context"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
)

// Run with: make bench (go test -run '^$' -bench . -benchtime 5x ./integration/)

// BenchmarkAttachWarm measures handing out a running container again: the
// price every test pays after the first. "cached": the last good health
// probe is younger than the interval, so nothing goes over the network;
// "probe": a health probe runs on every attach (interval 1 ns).
func BenchmarkAttachWarm(b *testing.B) {
	for _, svc := range []cleanroom.Service{cleanroom.Postgres(), cleanroom.Redis()} {
		for _, mode := range []struct {
			name     string
			interval time.Duration
		}{{"cached", time.Hour}, {"probe", time.Nanosecond}} {
			b.Run(svc.Name()+"/"+mode.name, func(b *testing.B) {
				env, err := cleanroom.New(context.Background(), cleanroom.Config{
					ContainerHealthCheckInterval: mode.interval,
					Images:                       map[string]string{"postgres": postgresImage, "redis": redisImage},
				}, svc)
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				defer func() {
					b.StopTimer() // removing the pod is not part of an attach
					if err := env.Close(ctx); err != nil {
						b.Error(err)
					}
				}()
				first, err := env.Get(ctx, svc.Name())
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					c, err := env.Get(ctx, svc.Name())
					if err != nil || c != first {
						b.Fatalf("attach: %v (replaced: %v)", err, c != first)
					}
				}
			})
		}
	}
}

// BenchmarkColdStart measures what the first test of a suite waits for:
// pod creation plus a Postgres container from start to answering SELECT 1
// (data on tmpfs), and, outside the timer, its removal.
func BenchmarkColdStart(b *testing.B) {
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		env, err := cleanroom.New(ctx, cleanroom.Config{Images: map[string]string{"postgres": postgresImage}}, cleanroom.Postgres())
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := env.Get(ctx, "postgres"); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := env.Close(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
