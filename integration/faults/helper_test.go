package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
)

// helperEnv makes this test binary a test process of a scenario instead of
// running the scenarios. Its configuration comes from CLEANROOM_*
// variables, as a suite's does (CLEANROOM_SUITE names the scenario's).
const helperEnv = "CLEANROOM_FAULTS_HELPER"

// Helper modes:
//
//	hold    start Postgres and Redis, say "READY <pod> <postgres container>",
//	        then hold them until stdin closes: a package in the middle of
//	        its tests
//	attach  32 goroutines attach to Postgres and Redis at once, then the
//	        process uses each once and says "OK"
//	work    for CLEANROOM_FAULTS_FOR (a duration), goroutines run short
//	        tests (attach, connect, SELECT 1) one after another, then say
//	        "RESULT <json>": when each test began and whether it passed
func helper(mode string) int {
	cfg, err := cleanroom.LoadConfig("")
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	ctx := context.Background()
	env, err := cleanroom.New(ctx, cfg, cleanroom.Postgres(), cleanroom.Redis())
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	defer env.Close(ctx)
	switch mode {
	case "hold":
		pg, err := env.Get(ctx, "postgres")
		if err != nil {
			fmt.Println("ERROR", err)
			return 1
		}
		if _, err := env.Get(ctx, "redis"); err != nil {
			fmt.Println("ERROR", err)
			return 1
		}
		fmt.Println("READY", pg.PodName, pg.Name)
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until stdin closes
		return 0
	case "attach":
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, svc := range []string{"postgres", "redis"} {
					if _, err := env.Get(ctx, svc); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		errs <- useBoth(ctx, env)
		close(errs)
		for err := range errs {
			if err != nil {
				fmt.Println("ERROR", err)
				return 1
			}
		}
		fmt.Println("OK")
		return 0
	case "work":
		d, err := time.ParseDuration(os.Getenv("CLEANROOM_FAULTS_FOR"))
		if err != nil {
			fmt.Println("ERROR", err)
			return 1
		}
		workers, _ := strconv.Atoi(os.Getenv("CLEANROOM_FAULTS_WORKERS"))
		res := work(env, max(workers, 1), d)
		b, _ := json.Marshal(res)
		fmt.Println("RESULT", string(b))
		return 0
	}
	fmt.Println("ERROR unknown helper mode", mode)
	return 2
}

// useBoth attaches to both services and uses each once.
func useBoth(ctx context.Context, env *cleanroom.Environment) error {
	pg, err := env.Get(ctx, "postgres")
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, pg.Postgres().URL())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return err
	}
	rd, err := env.Get(ctx, "redis")
	if err != nil {
		return err
	}
	c := redis.NewClient(rd.Redis().Options())
	defer c.Close()
	return c.Ping(ctx).Err()
}

// testRun is one short test of the work mode.
type testRun struct {
	Began time.Time `json:"began"`
	Ended time.Time `json:"ended"`
	Err   string    `json:"err,omitempty"`
}

func work(env *cleanroom.Environment, workers int, d time.Duration) []testRun {
	var mu sync.Mutex
	var out []testRun
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				r := testRun{Began: time.Now()}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				if err := useBoth(ctx, env); err != nil {
					r.Err = err.Error()
				}
				cancel()
				r.Ended = time.Now()
				mu.Lock()
				out = append(out, r)
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	return out
}
