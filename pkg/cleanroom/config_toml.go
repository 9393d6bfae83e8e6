package cleanroom

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

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
