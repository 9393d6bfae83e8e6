// Package pertest is a test package whose suite turns singletons off, as a
// user does with enable_singleton_containers = false (here through
// CLEANROOM_ENABLE_SINGLETON_CONTAINERS): every test gets containers of its
// own, in a pod removed when the test ends.
package pertest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/cleanroom-go/cleanroom/internal/labels"
	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
	"github.com/cleanroom-go/cleanroom/pkg/podman"
)

func TestMain(m *testing.M) {
	os.Setenv("CLEANROOM_ENABLE_SINGLETON_CONTAINERS", "false")
	cleanroom.Main(m, cleanroom.Redis())
}

func TestEveryTestGetsAPodOfItsOwn(t *testing.T) {
	c, err := podman.Connect(context.Background(), podman.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var mu sync.Mutex
	var pods []string
	t.Run("group", func(t *testing.T) {
		for i := range 3 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				rd := cleanroom.RedisFor(t)
				rdb := redis.NewClient(rd.Options())
				defer rdb.Close()
				if err := rdb.Set(t.Context(), "k", t.Name(), 0).Err(); err != nil {
					t.Fatal(err)
				}
				// Its own server: no other test's value.
				if v, _ := rdb.Get(t.Context(), "k").Result(); v != t.Name() {
					t.Errorf("k = %q, want %q", v, t.Name())
				}
				info, err := c.InspectPod(t.Context(), rd.Container().PodName)
				if err != nil {
					t.Fatal(err)
				}
				if info.Labels[labels.Role] != "per-test" {
					t.Errorf("pod %s has role %q, want per-test", info.Name, info.Labels[labels.Role])
				}
				mu.Lock()
				pods = append(pods, info.Name)
				mu.Unlock()
			})
		}
	})
	if len(pods) != 3 || pods[0] == pods[1] || pods[1] == pods[2] || pods[0] == pods[2] {
		t.Errorf("per-test pods: %v, want 3 different", pods)
	}
	for _, p := range pods {
		if _, err := c.InspectPod(context.Background(), p); err == nil {
			t.Errorf("per-test pod %s outlived its test", p)
		}
	}
}
