package sharing

import (
	"context"
	"testing"
	"time"

	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
)

// applyImageEnv takes the images from CLEANROOM_*_IMAGE, as Main would.
func applyImageEnv(cfg *cleanroom.Config) error {
	loaded, err := cleanroom.LoadConfig("")
	cfg.Images = loaded.Images
	return err
}

// BenchmarkKeepWarmAttach measures what a test process pays when the
// suite's pod is kept warm from an earlier run: New, then Postgres and
// Redis each adopted (found, checked ready) — no container started.
//
//	go test -run '^$' -bench KeepWarm -benchtime 50x ./integration/sharing/
func BenchmarkKeepWarmAttach(b *testing.B) {
	ctx := context.Background()
	cfg := cleanroom.Config{Suite: newSuite("bench-warm"), KeepWarm: time.Minute, GracePeriod: time.Millisecond}
	if err := applyImageEnv(&cfg); err != nil {
		b.Fatal(err)
	}
	attach := func() (cleanroom.Stats, error) {
		env, err := cleanroom.New(ctx, cfg, cleanroom.Postgres(), cleanroom.Redis())
		if err != nil {
			return cleanroom.Stats{}, err
		}
		defer env.Close(ctx)
		for _, svc := range []string{"postgres", "redis"} {
			if _, err := env.Get(ctx, svc); err != nil {
				return cleanroom.Stats{}, err
			}
		}
		return env.Stats(), nil
	}
	if _, err := attach(); err != nil { // the first run starts them
		b.Fatal(err)
	}
	c := connectB(b)
	defer func() {
		_ = c.RemovePod(ctx, "cleanroom-"+cfg.Suite)
	}()
	b.ResetTimer()
	for range b.N {
		st, err := attach()
		if err != nil {
			b.Fatal(err)
		}
		if st.Started != 0 || st.Adopted != 2 {
			b.Fatalf("a warm attach started containers: %+v", st)
		}
	}
}
