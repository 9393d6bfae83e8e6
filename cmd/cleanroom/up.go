package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
)

var upCommand = &command{
	name:     "up",
	synopsis: "[--wait DURATION] [postgres] [redis]",
	summary: "start the suite of the module here (default: postgres and redis) and return when it is\n" +
		"            ready; the tests attach to it: cleanroom up & go test ./...",
}

func init() { upCommand.run = runUp }

// upServices are the services up can start, as a TestMain declares them
// with no options: cleanroom.Main(m, cleanroom.Postgres(), cleanroom.Redis()).
var upServices = map[string]func() cleanroom.Service{
	"postgres": func() cleanroom.Service { return cleanroom.Postgres() },
	"redis":    func() cleanroom.Service { return cleanroom.Redis() },
}

func runUp(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	wait := fs.Duration("wait", 10*time.Minute, "how long the suite waits for its tests; after them, their grace period ends it")
	if err := parseFlags(e, upCommand, fs, args, -1); err != nil {
		return err
	}
	if *wait <= 0 {
		return usageError{fmt.Sprintf("--wait %s: want a positive duration, such as 10m", *wait)}
	}
	names := fs.Args()
	if len(names) == 0 {
		names = []string{"postgres", "redis"}
	}
	var services []cleanroom.Service
	for _, n := range names {
		svc, ok := upServices[n]
		if !ok {
			return usageError{fmt.Sprintf("unknown service %q: up starts postgres and redis (a suite with other services starts with its tests)", n)}
		}
		if slices.ContainsFunc(services, func(s cleanroom.Service) bool { return s.Name() == n }) {
			return usageError{fmt.Sprintf("service %q named twice", n)}
		}
		services = append(services, svc())
	}
	cfg, err := cleanroom.LoadConfig("")
	if err != nil {
		return err
	}
	if e.url != "" {
		cfg.Connection = e.url
	}
	if cfg.DisableSingletonContainers {
		return errors.New("enable_singleton_containers is false here: every test starts its own containers, so there is no suite to start ahead")
	}
	// The suite waits for its tests as long as a kept-warm one would; the
	// tests then write their own settings, and their grace period ends it.
	cfg.KeepWarm = max(cfg.KeepWarm, *wait)
	started := time.Now()
	env, err := cleanroom.New(ctx, cfg, services...)
	if err != nil {
		return err
	}
	// All at once: the first Get starts the others beside it.
	var wg sync.WaitGroup
	lines := make([]string, len(services))
	errs := make([]error, len(services))
	for i, svc := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := env.Get(ctx, svc.Name())
			if err != nil {
				errs[i] = err
				return
			}
			addr := ""
			switch svc.Name() {
			case "postgres":
				addr = fmt.Sprintf("%s:%d", c.Postgres().Host(), c.Postgres().Port())
			case "redis":
				addr = c.Redis().Addr()
			}
			lines[i] = fmt.Sprintf("%s ready at %s", svc.Name(), addr)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = env.Close(context.WithoutCancel(ctx))
		return err
	}
	fmt.Fprintf(e.stdout, "suite %s up in %s: %s\n", env.Suite(), time.Since(started).Round(time.Millisecond), strings.Join(lines, ", "))
	fmt.Fprintf(e.stdout, "it waits %s for its tests (cleanroom ps shows it); after them, it goes at the end of their grace period\n", cfg.KeepWarm)
	// Gives this process's lease back (the pod stays) and lets a snapshot
	// being saved finish.
	return env.Close(context.WithoutCancel(ctx))
}
