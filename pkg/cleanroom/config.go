package cleanroom

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/cleanroom-go/cleanroom/internal/pull"
)

// configFile is the name of the configuration file LoadConfig looks for.
const configFile = "cleanroom.toml"

// Defaults of Config's durations, as in ADR-002's development configuration.
const (
	defaultStartupTimeout      = 60 * time.Second
	defaultHealthCheckInterval = 30 * time.Second
	defaultMaxReuseTime        = time.Hour
	// defaultGracePeriod: with `go test -p 1`, the next package's test binary
	// is linked after the previous one ended; 3.5–4.5 s were measured here
	// with a warm build cache.
	defaultGracePeriod = 10 * time.Second
)

// Config tunes an Environment. The zero value is the default configuration;
// every field documents its default. LoadConfig fills it from
// cleanroom.toml and CLEANROOM_* environment variables.
type Config struct {
	// DisableSingletonContainers gives every test its own containers (own
	// pod, removed in t.Cleanup) instead of the suite's shared ones.
	// TOML: enable_singleton_containers = false. Default: singletons on.
	DisableSingletonContainers bool
	// ContainerStartupTimeout bounds image pull, creation, start and
	// readiness of one container. TOML: container_startup_timeout (seconds).
	// Default 60 s.
	ContainerStartupTimeout time.Duration
	// ContainerHealthCheckInterval: before a container is reused, a health
	// probe runs unless the last good one is younger than this.
	// TOML: container_health_check_interval (seconds). Default 30 s.
	ContainerHealthCheckInterval time.Duration
	// MaxContainerReuseTime: a container older than this is replaced at the
	// next attach when no test of this process is using it.
	// TOML: max_container_reuse_time (seconds). Default 1 h.
	MaxContainerReuseTime time.Duration
	// Images overrides the image of a service by service name.
	// TOML: [cleanroom.images] postgres = "…"; env CLEANROOM_POSTGRES_IMAGE.
	// Default: each service's own pinned image.
	Images map[string]string
	// Connection is the Podman service URI. TOML: connection; env
	// CLEANROOM_CONNECTION. Default: as pkg/podman finds it (CONTAINER_HOST,
	// containers.conf, rootless then rootful socket).
	Connection string
	// DisableSnapshots: cold starts always use the plain image (see
	// Snapshot). TOML: snapshots = false; env CLEANROOM_SNAPSHOTS=false.
	// Default: snapshots on for services that take them (Postgres).
	DisableSnapshots bool
	// PullTimeout bounds pulling a missing image, before the start-up
	// timeout begins. TOML: pull_timeout (seconds); env
	// CLEANROOM_PULL_TIMEOUT. Default 10 min. A pull that reports no
	// progress for 30 s fails sooner, naming the image and the registry.
	PullTimeout time.Duration
	// BindAddress is the host address services publish their ports on.
	// TOML: bind_address; env CLEANROOM_BIND_ADDRESS. Default 127.0.0.1:
	// nothing is reachable from other machines. With a remote engine, set an
	// address of that host this machine can reach (or 0.0.0.0).
	BindAddress string
	// Suite names the suite: every test process with the same suite shares
	// one pod. TOML: suite; env CLEANROOM_SUITE. Default: a hash of the
	// module root's path and of the declared services' definitions, so that
	// all packages of one module share and different modules never do.
	Suite string
	// GracePeriod is how long the suite's pod outlives the last test process
	// using it, so that the next package of `go test ./...` (run one after
	// another with -p 1) adopts it instead of starting anew.
	// TOML: grace_period (seconds); env CLEANROOM_GRACE_PERIOD. Default 10 s.
	GracePeriod time.Duration
	// KeepWarm keeps the suite's pod for this long after the last test
	// process is gone, for the next run to attach in milliseconds.
	// TOML: keep_warm (seconds; 0 turns it off); env CLEANROOM_KEEP_WARM.
	// Default 0: off.
	KeepWarm time.Duration
	// Logger receives suite-level events (containers started, reused,
	// replaced). Default: discard; CLEANROOM_DEBUG=1 logs to stderr.
	Logger *slog.Logger

	// Source names where the configuration came from, for error messages.
	Source string
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.ContainerStartupTimeout == 0 {
		c.ContainerStartupTimeout = defaultStartupTimeout
	}
	if c.ContainerHealthCheckInterval == 0 {
		c.ContainerHealthCheckInterval = defaultHealthCheckInterval
	}
	if c.MaxContainerReuseTime == 0 {
		c.MaxContainerReuseTime = defaultMaxReuseTime
	}
	if c.GracePeriod == 0 {
		c.GracePeriod = defaultGracePeriod
	}
	if c.PullTimeout == 0 {
		c.PullTimeout = pull.DefaultTimeout
	}
	if c.BindAddress == "" {
		c.BindAddress = "127.0.0.1"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		if debugEnabled() {
			c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
	if c.Source == "" {
		c.Source = "Config"
	}
	return c
}

// errBadSuite is returned for a Config.Suite that cannot name a pod.
func (c Config) validateSuite() error {
	if c.Suite != "" && !suiteNameRE.MatchString(c.Suite) {
		return fmt.Errorf("%s: suite %q: want letters, digits, dots, dashes and underscores (at most 40)", c.Source, c.Suite)
	}
	return nil
}

// validate reports a negative duration; zero means "default" in a Config.
func (c Config) validate() error {
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"container_startup_timeout", c.ContainerStartupTimeout},
		{"container_health_check_interval", c.ContainerHealthCheckInterval},
		{"max_container_reuse_time", c.MaxContainerReuseTime},
		{"grace_period", c.GracePeriod},
		{"keep_warm", c.KeepWarm},
		{"pull_timeout", c.PullTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("%s: %s is negative (%s); use a positive duration", c.Source, d.key, d.v)
		}
	}
	return c.validateSuite()
}

func debugEnabled() bool {
	v := os.Getenv("CLEANROOM_DEBUG")
	return v != "" && v != "0" && v != "false"
}

// LoadConfig reads the [cleanroom] table of the first cleanroom.toml found
// in dir or its parents up to the module root (the directory holding
// go.mod), then applies CLEANROOM_<KEY> environment variables. dir "" is
// the working directory, which under `go test` is the package's directory.
// No file gives the defaults. Unknown keys, wrong types and zero or
// negative durations are errors that name the key and the file.
//
// Keys (durations in whole seconds):
//
//	[cleanroom]
//	enable_singleton_containers = true     # CLEANROOM_ENABLE_SINGLETON_CONTAINERS
//	container_startup_timeout = 60         # CLEANROOM_CONTAINER_STARTUP_TIMEOUT
//	container_health_check_interval = 30   # CLEANROOM_CONTAINER_HEALTH_CHECK_INTERVAL
//	max_container_reuse_time = 3600        # CLEANROOM_MAX_CONTAINER_REUSE_TIME
//	connection = "unix:///run/podman/podman.sock"   # CLEANROOM_CONNECTION
//	suite = "shop"                         # CLEANROOM_SUITE
//	grace_period = 10                      # CLEANROOM_GRACE_PERIOD
//	keep_warm = 900                        # CLEANROOM_KEEP_WARM (0: off)
//	snapshots = true                       # CLEANROOM_SNAPSHOTS
//	bind_address = "127.0.0.1"             # CLEANROOM_BIND_ADDRESS
//	pull_timeout = 600                     # CLEANROOM_PULL_TIMEOUT
//
//	[cleanroom.images]
//	postgres = "docker.io/library/postgres:15.10"   # CLEANROOM_POSTGRES_IMAGE
func LoadConfig(dir string) (Config, error) {
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return Config{}, fmt.Errorf("load cleanroom config: %w", err)
		}
		dir = wd
	}
	var cfg Config
	path, err := findConfigFile(dir)
	if err != nil {
		return Config{}, err
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("load cleanroom config: %w", err)
		}
		if cfg, err = parseConfig(data, path); err != nil {
			return Config{}, err
		}
	}
	if err := applyEnv(&cfg, os.Environ()); err != nil {
		return Config{}, err
	}
	if path != "" {
		cfg.Source = path
	}
	return cfg, nil
}

// findConfigFile walks up from dir to the module root.
func findConfigFile(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("load cleanroom config: %w", err)
	}
	for {
		p := filepath.Join(dir, configFile)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("load cleanroom config: %w", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return "", nil // the module root: stop here
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", nil
		}
		dir = parent
	}
}
