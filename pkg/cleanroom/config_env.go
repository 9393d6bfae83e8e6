package cleanroom

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

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
