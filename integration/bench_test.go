package integration

import (
	"context"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/labels"
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
					ContainerHealthCheckInterval: mode.interval, BindAddress: bindAddress,
					Images: map[string]string{"postgres": postgresImage, "redis": redisImage},
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

// benchImages are the local images of the services the cold-start
// benchmarks start.
func benchImages() map[string]string {
	return map[string]string{"postgres": postgresImage, "redis": redisImage, "mariadb": mariadbImage, "nats": natsImage, "rabbitmq": rabbitmqImage}
}

// BenchmarkColdStart measures what the first test of a suite waits for:
// pod creation plus the service's container from start to ready (Postgres
// and MariaDB: data on tmpfs, initialisation included, no snapshot; Redis:
// PING answered; NATS: JetStream answering; RabbitMQ: AMQP and the
// management API answering),
// and, outside the timer, its removal.
func BenchmarkColdStart(b *testing.B) {
	ctx := context.Background()
	for _, svc := range []cleanroom.Service{cleanroom.Postgres(), cleanroom.Redis(), cleanroom.MariaDB(), cleanroom.NATS(), cleanroom.RabbitMQ()} {
		b.Run(svc.Name(), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				cfg := cleanroom.Config{Suite: "bench-cold-" + randomHex(4), DisableSnapshots: true, GracePeriod: time.Millisecond, BindAddress: bindAddress,
					Images: benchImages()}
				env, err := cleanroom.New(ctx, cfg, svc)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := env.Get(ctx, svc.Name()); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := env.Close(ctx); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkColdStartFromSnapshot is BenchmarkColdStart with the service's
// data from a snapshot image (made once, before the timer), for the
// services whose initialisation a snapshot saves.
func BenchmarkColdStartFromSnapshot(b *testing.B) {
	for _, svc := range []cleanroom.Service{cleanroom.Postgres(), cleanroom.MariaDB()} {
		b.Run(svc.Name(), func(b *testing.B) { coldStartFromSnapshot(b, svc) })
	}
}

func coldStartFromSnapshot(b *testing.B, svc cleanroom.Service) {
	ctx := context.Background()
	suite := "bench-snap-" + randomHex(4)
	cfg := cleanroom.Config{Suite: suite, GracePeriod: time.Millisecond, BindAddress: bindAddress, Images: benchImages()}
	var readyIn time.Duration
	pc := connect(b)
	run := func(timed bool) cleanroom.Stats {
		env, err := cleanroom.New(ctx, cfg, svc)
		if err != nil {
			b.Fatal(err)
		}
		if timed {
			b.StartTimer()
		}
		c, err := env.Get(ctx, svc.Name())
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if timed {
			readyIn += c.ReadyIn
		}
		st := env.Stats()
		if err := env.Close(ctx); err != nil {
			b.Fatal(err)
		}
		// The next start must not adopt this pod: wait for the reaper.
		for i := 0; i < 100; i++ {
			if _, err := pc.InspectPod(ctx, "cleanroom-"+suite); err != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		return st
	}
	b.StopTimer()
	run(false) // makes the snapshot
	defer func() {
		imgs, _ := pc.ListImages(ctx, map[string]string{labels.Suite: suite})
		for _, img := range imgs {
			_ = pc.RemoveImage(ctx, img.ID)
		}
	}()
	for range b.N {
		if st := run(true); st.Snapshot != 1 {
			b.Fatalf("not started from the snapshot: %+v", st)
		}
	}
	// The container alone, from its start to ready (the pod's creation
	// and the lookups before excluded).
	b.ReportMetric(float64(readyIn.Milliseconds())/float64(b.N), "ms-start-to-ready")
}
