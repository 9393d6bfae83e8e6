package cleanroom

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseConfigADRExamples(t *testing.T) {
	cfg, err := parseConfig([]byte(`
[cleanroom]
enable_singleton_containers = true
container_startup_timeout = 120
container_health_check_interval = 60
max_container_reuse_time = 7200
connection = "unix:///run/user/1000/podman/podman.sock"

[cleanroom.images]
postgres = "localhost/cleanroom/postgres:15"

[other-tool]
anything = "is left alone"
`), "cleanroom.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		ContainerStartupTimeout:      120 * time.Second,
		ContainerHealthCheckInterval: time.Minute,
		MaxContainerReuseTime:        2 * time.Hour,
		Connection:                   "unix:///run/user/1000/podman/podman.sock",
		Images:                       map[string]string{"postgres": "localhost/cleanroom/postgres:15"},
		Source:                       "cleanroom.toml",
	}
	if diff := cmp.Diff(want, cfg, cmpopts.IgnoreFields(Config{}, "Logger")); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}

	cfg, err = parseConfig([]byte("[cleanroom]\nenable_singleton_containers = false  # Disable for integration tests\ncontainer_startup_timeout = 30\n"), "x.toml")
	if err != nil || !cfg.DisableSingletonContainers || cfg.ContainerStartupTimeout != 30*time.Second {
		t.Errorf("ADR testing configuration: %+v, %v", cfg, err)
	}
}

func TestParseConfigErrorsNameKeyAndFile(t *testing.T) {
	for _, tc := range []struct{ toml, want string }{
		{"[cleanroom]\ncontainer_startup_timout = 60", "ci/cleanroom.toml:2: [cleanroom] container_startup_timout: unknown key; known keys: bind_address, connection, container_health_check_interval, container_startup_timeout"},
		{"[cleanroom]\n\ncontainer_startup_timeout = \"60s\"", `ci/cleanroom.toml:3: [cleanroom] container_startup_timeout: want whole seconds (e.g. container_startup_timeout = 60), got a string ("60s")`},
		{"[cleanroom]\ncontainer_startup_timeout = 1.5", "ci/cleanroom.toml:2: [cleanroom] container_startup_timeout: want whole seconds (e.g. container_startup_timeout = 60), got a float (1.5)"},
		{"[cleanroom]\nmax_container_reuse_time = -5", "ci/cleanroom.toml:2: [cleanroom] max_container_reuse_time: must be a positive number of seconds, got -5"},
		{"[cleanroom]\ncontainer_health_check_interval = 0", "container_health_check_interval: must be a positive number of seconds, got 0"},
		{"[cleanroom]\nmax_container_reuse_time = 9223372036854775807", "is too long"},
		{"[cleanroom]\nenable_singleton_containers = \"yes\"", `ci/cleanroom.toml:2: [cleanroom] enable_singleton_containers: want true or false, got a string ("yes")`},
		{"[cleanroom]\nconnection = 5", "connection: want a Podman URI string"},
		{"[cleanroom]\nbind_address = \"everywhere\"", `bind_address: want an IP address (e.g. "0.0.0.0" or the engine host's address), got "everywhere"`},
		{"[cleanroom]\nsuite = \"my suite\"", "suite: want a name of letters, digits"},
		{"[cleanroom]\nkeep_warm = -1", "keep_warm: must be a positive number of seconds, got -1"},
		{"[cleanroom]\nimages = \"postgres:15\"", "ci/cleanroom.toml:2: [cleanroom] images: want a table"},
		{"[cleanroom.images]\npostgres = 15", "ci/cleanroom.toml:2: [cleanroom] images.postgres: want an image reference string, got an integer (15)"},
		{"[cleanroom.images]\nBad_Name = \"x\"", "ci/cleanroom.toml:2: [cleanroom.images] Bad_Name: not a service name"},
		{"cleanroom = 1", "ci/cleanroom.toml:1: cleanroom must be a table"},
		{"[cleanroom\n", "ci/cleanroom.toml:2: not valid TOML: "},
		{"[tool]\nunknown = 1\n[cleanroom]\nkeep_warm = 5\nsnapshots = 1", "ci/cleanroom.toml:5: [cleanroom] snapshots: want true or false, got an integer (1)"},
	} {
		_, err := parseConfig([]byte(tc.toml), "ci/cleanroom.toml")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "ci/cleanroom.toml") {
			t.Errorf("%q:\n got %v\nwant %q (and the file name)", tc.toml, err, tc.want)
		}
	}
}

func TestLoadConfigWalksUpToTheModuleRoot(t *testing.T) {
	root := t.TempDir()
	pkg := filepath.Join(root, "internal", "store")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "go.mod"), "module example.com/app\n")
	// Above the module root: must not be read.
	write(filepath.Join(filepath.Dir(root), configFile), "[cleanroom]\nbogus = 1\n")

	cfg, err := LoadConfig(pkg)
	if err != nil || cfg.ContainerStartupTimeout != 0 || cfg.Source != "" {
		t.Fatalf("no file up to the module root: %+v, %v; want the defaults", cfg, err)
	}

	write(filepath.Join(root, configFile), "[cleanroom]\ncontainer_startup_timeout = 90\n")
	cfg, err = LoadConfig(pkg)
	if err != nil || cfg.ContainerStartupTimeout != 90*time.Second || cfg.Source != filepath.Join(root, configFile) {
		t.Fatalf("file at the module root: %+v, %v", cfg, err)
	}

	write(filepath.Join(pkg, configFile), "[cleanroom]\nmax_container_reuse_time = 10\n")
	cfg, err = LoadConfig(pkg)
	if err != nil || cfg.MaxContainerReuseTime != 10*time.Second || cfg.ContainerStartupTimeout != 0 {
		t.Fatalf("the nearest file wins, alone: %+v, %v", cfg, err)
	}

	t.Setenv("CLEANROOM_MAX_CONTAINER_REUSE_TIME", "20")
	t.Setenv("CLEANROOM_ENABLE_SINGLETON_CONTAINERS", "false")
	t.Setenv("CLEANROOM_POSTGRES_IMAGE", "localhost/pg:15")
	t.Setenv("CLEANROOM_MY_CACHE_IMAGE", "localhost/cache:1")
	t.Setenv("CLEANROOM_CONNECTION", "tcp://127.0.0.1:8888")
	cfg, err = LoadConfig(pkg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxContainerReuseTime != 20*time.Second || !cfg.DisableSingletonContainers || cfg.Connection != "tcp://127.0.0.1:8888" ||
		cfg.Images["postgres"] != "localhost/pg:15" || cfg.Images["my-cache"] != "localhost/cache:1" {
		t.Errorf("environment overrides: %+v", cfg)
	}

	for env, want := range map[string]string{
		"CLEANROOM_CONTAINER_STARTUP_TIMEOUT":       "CLEANROOM_CONTAINER_STARTUP_TIMEOUT=\"1m\": want whole seconds",
		"CLEANROOM_CONTAINER_HEALTH_CHECK_INTERVAL": "CLEANROOM_CONTAINER_HEALTH_CHECK_INTERVAL: must be a positive number",
		"CLEANROOM_ENABLE_SINGLETON_CONTAINERS":     "CLEANROOM_ENABLE_SINGLETON_CONTAINERS=\"1m\": want true or false",
	} {
		t.Run(env, func(t *testing.T) {
			value := "1m"
			if strings.Contains(want, "positive") {
				value = "-3"
			}
			t.Setenv(env, value)
			if _, err := LoadConfig(pkg); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s=%s: %v; want %q", env, value, err, want)
			}
		})
	}

	write(filepath.Join(pkg, configFile), "[cleanroom]\nmax_container_reuse_time = \"1h\"\n")
	if _, err := LoadConfig(pkg); err == nil || !strings.Contains(err.Error(), filepath.Join(pkg, configFile)) {
		t.Errorf("a bad file must be named with its path: %v", err)
	}
}

func TestConfigDefaultsAndNegativeDurations(t *testing.T) {
	d := Config{}.withDefaults()
	if d.ContainerStartupTimeout != time.Minute || d.ContainerHealthCheckInterval != 30*time.Second || d.MaxContainerReuseTime != time.Hour || d.Logger == nil {
		t.Errorf("defaults: %+v", d)
	}
	err := Config{MaxContainerReuseTime: -time.Second}.validate()
	if err == nil || !strings.Contains(err.Error(), "max_container_reuse_time is negative") {
		t.Errorf("negative duration in a Config: %v", err)
	}
}

// FuzzParseConfig: the loader never panics, and what it accepts is usable.
func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{
		"[cleanroom]\ncontainer_startup_timeout = 60\n",
		"[cleanroom]\nenable_singleton_containers = false\n[cleanroom.images]\npostgres = \"x\"\n",
		"[cleanroom]\nmax_container_reuse_time = -1\n",
		"cleanroom = [1, 2]\n",
		"[cleanroom.images]\n\"\" = \"\"\n",
		"[[cleanroom]]\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseConfig(data, "fuzz.toml")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.toml") {
				t.Errorf("error without the file name: %v", err)
			}
			return
		}
		if cfg.ContainerStartupTimeout < 0 || cfg.ContainerHealthCheckInterval < 0 || cfg.MaxContainerReuseTime < 0 {
			t.Errorf("accepted a negative duration: %+v", cfg)
		}
		if err := cfg.validate(); err != nil {
			t.Errorf("accepted a config that does not validate: %v", err)
		}
		for svc, img := range cfg.Images {
			if !serviceNameRE.MatchString(svc) || strings.TrimSpace(img) == "" {
				t.Errorf("accepted image %q for service %q", img, svc)
			}
		}
	})
}

// Snapshot image names follow the image-reference grammar for every valid
// suite name, and different suites keep different names.
func TestSnapshotNameIsAValidImageName(t *testing.T) {
	component := regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)
	seen := map[string]string{}
	for _, suite := range []string{"shop", "Shop", "SHOP", "shop_", "my.suite", "a..b", "a__b", "x-", "bench-snap-ab12", "0ab_CD.ef-9"} {
		if err := (Config{Suite: suite}).validateSuite(); err != nil {
			t.Fatalf("test input %q is not a valid suite: %v", suite, err)
		}
		name := snapshotName(suite, "postgres")
		if !component.MatchString(name) {
			t.Errorf("suite %q: snapshot name %q is not a valid image name component", suite, name)
		}
		if other, dup := seen[name]; dup {
			t.Errorf("suites %q and %q share the snapshot name %q", other, suite, name)
		}
		seen[name] = suite
	}
	if got := snapshotName("bench-snap-ab12", "postgres"); got != "bench-snap-ab12-postgres" {
		t.Errorf("a name that is already valid changed: %q", got)
	}
}
