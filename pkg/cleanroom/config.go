package cleanroom

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
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

var durationKeys = map[string]func(*Config) *time.Duration{
	"container_startup_timeout":       func(c *Config) *time.Duration { return &c.ContainerStartupTimeout },
	"container_health_check_interval": func(c *Config) *time.Duration { return &c.ContainerHealthCheckInterval },
	"max_container_reuse_time":        func(c *Config) *time.Duration { return &c.MaxContainerReuseTime },
	"grace_period":                    func(c *Config) *time.Duration { return &c.GracePeriod },
	"keep_warm":                       func(c *Config) *time.Duration { return &c.KeepWarm },
	"pull_timeout":                    func(c *Config) *time.Duration { return &c.PullTimeout },
}

// zeroAllowed are the duration keys for which 0 means "off".
var zeroAllowed = map[string]bool{"keep_warm": true}

var (
	serviceNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)
	suiteNameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$`)
)

// fileConfig is the [cleanroom] table of cleanroom.toml as the TOML
// decoder fills it; a nil field was not given.
type fileConfig struct {
	Cleanroom *struct {
		EnableSingletonContainers *bool             `toml:"enable_singleton_containers"`
		Snapshots                 *bool             `toml:"snapshots"`
		ContainerStartupTimeout   *int64            `toml:"container_startup_timeout"`
		HealthCheckInterval       *int64            `toml:"container_health_check_interval"`
		MaxContainerReuseTime     *int64            `toml:"max_container_reuse_time"`
		GracePeriod               *int64            `toml:"grace_period"`
		KeepWarm                  *int64            `toml:"keep_warm"`
		PullTimeout               *int64            `toml:"pull_timeout"`
		Suite                     *string           `toml:"suite"`
		BindAddress               *string           `toml:"bind_address"`
		Connection                *string           `toml:"connection"`
		Images                    map[string]string `toml:"images"`
	} `toml:"cleanroom"`
}

// want says what a key takes, for errors.
var want = map[string]string{
	"enable_singleton_containers": "true or false",
	"snapshots":                   "true or false",
	"suite":                       "a name of letters, digits, dots, dashes and underscores (at most 40)",
	"bind_address":                `an IP address (e.g. "0.0.0.0" or the engine host's address)`,
	"connection":                  "a Podman URI string (unix:///…, tcp://…, ssh://…)",
	"images":                      `a table ([cleanroom.images]) of service = "image"`,
}

// typeErrorRE reads the decoder's type errors: its line, key, and the type
// it found.
var typeErrorRE = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (?:incompatible types: TOML value has type (\w+)|type mismatch for .*: expected table but found (\w+))`)

// parseErrorRE is the decoder's prefix of a syntax error.
var parseErrorRE = regexp.MustCompile(`^toml: line \d+( \(last key "[^"]*"\))?: `)

// valueAt is the value assigned on line (1-based, as text) of data, as
// " (VALUE)", or "" when there is none.
func valueAt(data []byte, line string) string {
	n, err := strconv.Atoi(line)
	lines := strings.Split(string(data), "\n")
	if err != nil || n < 1 || n > len(lines) {
		return ""
	}
	_, v, ok := strings.Cut(lines[n-1], "=")
	if !ok || strings.TrimSpace(v) == "" {
		return ""
	}
	return " (" + strings.TrimSpace(v) + ")"
}

// parseConfig parses the content of a cleanroom.toml; source names it in
// errors, with the line. Only the [cleanroom] table is read; other tables
// are left to other tools. Unknown keys are the decoder's undecoded ones.
func parseConfig(data []byte, source string) (Config, error) {
	cfg := Config{Source: source}
	var fc fileConfig
	md, err := toml.Decode(string(data), &fc)
	if err != nil {
		if m := typeErrorRE.FindStringSubmatch(err.Error()); m != nil {
			key := strings.TrimPrefix(m[2], "cleanroom.")
			got := tomlTypeName(m[3]+m[4]) + valueAt(data, m[1])
			if key == "cleanroom" {
				return Config{}, fmt.Errorf("%s:%s: cleanroom must be a table ([cleanroom]), got %s", source, m[1], got)
			}
			return Config{}, fmt.Errorf("%s:%s: [cleanroom] %s: want %s, got %s", source, m[1], key, wantOf(key), got)
		}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return Config{}, fmt.Errorf("%s:%d: not valid TOML: %s", source, pe.Position.Line, parseErrorRE.ReplaceAllString(pe.Error(), ""))
		}
		return Config{}, fmt.Errorf("%s: not valid TOML: %w", source, err)
	}
	if t := md.Type("cleanroom", "images"); t != "" && t != "Hash" {
		return Config{}, fmt.Errorf("%s:%d: [cleanroom] images: want %s, got %s", source, lineOf(data, "images"), want["images"], strings.ToLower(t))
	}
	for _, k := range md.Undecoded() {
		if len(k) < 2 || k[0] != "cleanroom" {
			continue // another tool's table
		}
		return Config{}, fmt.Errorf("%s:%d: [cleanroom] %s: unknown key; known keys: %s", source, lineOf(data, k[len(k)-1]), strings.Join(k[1:], "."), strings.Join(knownKeys(), ", "))
	}
	c := fc.Cleanroom
	if c == nil {
		return cfg, nil
	}
	where := func(key string) string { return fmt.Sprintf("%s:%d: [cleanroom] %s", source, lineOf(data, key), key) }
	if c.EnableSingletonContainers != nil {
		cfg.DisableSingletonContainers = !*c.EnableSingletonContainers
	}
	if c.Snapshots != nil {
		cfg.DisableSnapshots = !*c.Snapshots
	}
	for key, v := range map[string]*int64{
		"container_startup_timeout":       c.ContainerStartupTimeout,
		"container_health_check_interval": c.HealthCheckInterval,
		"max_container_reuse_time":        c.MaxContainerReuseTime,
		"grace_period":                    c.GracePeriod,
		"keep_warm":                       c.KeepWarm,
		"pull_timeout":                    c.PullTimeout,
	} {
		if v == nil {
			continue
		}
		d, err := seconds(*v, zeroAllowed[key])
		if err != nil {
			return Config{}, fmt.Errorf("%s: %w", where(key), err)
		}
		*durationKeys[key](&cfg) = d
	}
	if c.Suite != nil {
		if !suiteNameRE.MatchString(*c.Suite) {
			return Config{}, fmt.Errorf("%s: want %s, got %q", where("suite"), want["suite"], *c.Suite)
		}
		cfg.Suite = *c.Suite
	}
	if c.BindAddress != nil {
		if net.ParseIP(*c.BindAddress) == nil {
			return Config{}, fmt.Errorf("%s: want %s, got %q", where("bind_address"), want["bind_address"], *c.BindAddress)
		}
		cfg.BindAddress = *c.BindAddress
	}
	if c.Connection != nil {
		if *c.Connection == "" {
			return Config{}, fmt.Errorf("%s: want %s, got an empty string", where("connection"), want["connection"])
		}
		cfg.Connection = *c.Connection
	}
	if c.Images != nil {
		cfg.Images = map[string]string{}
		for _, svc := range slices.Sorted(maps.Keys(c.Images)) {
			img := c.Images[svc]
			at := fmt.Sprintf("%s:%d: [cleanroom.images] %s", source, lineOf(data, svc), svc)
			if !serviceNameRE.MatchString(svc) {
				return Config{}, fmt.Errorf("%s: not a service name (lower-case letters, digits, dashes)", at)
			}
			if strings.TrimSpace(img) == "" {
				return Config{}, fmt.Errorf("%s: want an image reference, got an empty string", at)
			}
			cfg.Images[svc] = img
		}
	}
	return cfg, nil
}

// wantOf says what key takes.
func wantOf(key string) string {
	if w, ok := want[key]; ok {
		return w
	}
	if durationKeys[key] != nil {
		return fmt.Sprintf("whole seconds (e.g. %s = 60)", key)
	}
	if strings.HasPrefix(key, "images.") {
		return "an image reference string"
	}
	return "another type"
}

// tomlTypeName names a TOML type as the decoder reports it.
func tomlTypeName(t string) string {
	switch t {
	case "int64":
		return "an integer"
	case "float64":
		return "a float"
	case "bool":
		return "a boolean"
	case "string":
		return "a string"
	case "map", "table":
		return "a table"
	case "slice", "array":
		return "an array"
	}
	return t
}

// lineOf is the line of the first assignment to key in data (0 when none
// is found): the decoder does not say where a key it did not use was.
func lineOf(data []byte, key string) int {
	for i, line := range strings.Split(string(data), "\n") {
		l := strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(l, key); ok && strings.HasPrefix(strings.TrimSpace(rest), "=") {
			return i + 1
		}
		if rest, ok := strings.CutPrefix(l, `"`+key+`"`); ok && strings.HasPrefix(strings.TrimSpace(rest), "=") {
			return i + 1
		}
	}
	return 0
}

func knownKeys() []string {
	keys := []string{"enable_singleton_containers", "connection", "images", "suite", "snapshots", "bind_address"}
	for k := range durationKeys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// seconds turns a count of seconds into a positive (or, where zero means
// off, non-negative) duration.
func seconds(n int64, zeroOK bool) (time.Duration, error) {
	if n == 0 && zeroOK {
		return 0, nil
	}
	if n <= 0 {
		return 0, fmt.Errorf("must be a positive number of seconds, got %d", n)
	}
	if n > math.MaxInt64/int64(time.Second) {
		return 0, fmt.Errorf("%d seconds is too long", n)
	}
	return time.Duration(n) * time.Second, nil
}

// applyEnv applies CLEANROOM_* overrides from environ ("KEY=value" items).
func applyEnv(cfg *Config, environ []string) error {
	get := func(key string) (string, bool) {
		for i := len(environ) - 1; i >= 0; i-- {
			if k, v, ok := strings.Cut(environ[i], "="); ok && k == key {
				return v, true
			}
		}
		return "", false
	}
	if v, ok := get("CLEANROOM_ENABLE_SINGLETON_CONTAINERS"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("environment CLEANROOM_ENABLE_SINGLETON_CONTAINERS=%q: want true or false", v)
		}
		cfg.DisableSingletonContainers = !b
	}
	if v, ok := get("CLEANROOM_SNAPSHOTS"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("environment CLEANROOM_SNAPSHOTS=%q: want true or false", v)
		}
		cfg.DisableSnapshots = !b
	}
	for key, field := range durationKeys {
		env := "CLEANROOM_" + strings.ToUpper(key)
		v, ok := get(env)
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return fmt.Errorf("environment %s=%q: want whole seconds, e.g. %s=60", env, v, env)
		}
		d, err := seconds(n, zeroAllowed[key])
		if err != nil {
			return fmt.Errorf("environment %s: %w", env, err)
		}
		*field(cfg) = d
	}
	if v, ok := get("CLEANROOM_CONNECTION"); ok && v != "" {
		cfg.Connection = v
	}
	if v, ok := get("CLEANROOM_BIND_ADDRESS"); ok && v != "" {
		if net.ParseIP(v) == nil {
			return fmt.Errorf("environment CLEANROOM_BIND_ADDRESS=%q: want an IP address", v)
		}
		cfg.BindAddress = v
	}
	if v, ok := get("CLEANROOM_SUITE"); ok && v != "" {
		if !suiteNameRE.MatchString(v) {
			return fmt.Errorf("environment CLEANROOM_SUITE=%q: want letters, digits, dots, dashes and underscores (at most 40)", v)
		}
		cfg.Suite = v
	}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "CLEANROOM_") || !strings.HasSuffix(k, "_IMAGE") || v == "" {
			continue
		}
		svc := strings.ToLower(strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(k, "CLEANROOM_"), "_IMAGE"), "_", "-"))
		if svc == "" {
			continue
		}
		if cfg.Images == nil {
			cfg.Images = map[string]string{}
		}
		cfg.Images[svc] = v
	}
	return nil
}
