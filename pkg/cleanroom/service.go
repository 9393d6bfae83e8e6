package cleanroom

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
	"github.com/cleanroom-go/cleanroom/pkg/healthcheck"
	"github.com/cleanroom-go/cleanroom/pkg/isolation"
)

// Default images: the official ones, pinned (never :latest). Override them
// per service with Image, [cleanroom.images] in cleanroom.toml or
// CLEANROOM_<SERVICE>_IMAGE.
const (
	DefaultPostgresImage = "docker.io/library/postgres:15.10"
	DefaultRedisImage    = "docker.io/library/redis:7.4.1"
)

// Service is the definition of a service container: image, ports, env,
// command, probes and reset. Build one with Postgres, Redis, NATS or Generic and
// declare it to Main or New. A Service is a value; declaring it copies it.
type Service struct {
	name       string
	kind       string // "postgres", "redis", "mariadb", "nats", "rabbitmq", "generic"
	image      string
	ports      []uint16
	env        map[string]string
	entrypoint []string
	command    []string
	tmpfs      map[string]string
	pgSettings map[string]string // postgres: -c name=value flags
	ready      func(*Container) healthcheck.Probe
	health     func(*Container) healthcheck.Probe
	reset      func(context.Context, *Container) error
	resetCmd   []string
	snapshot   bool    // keep the initialised state as an image (see snapshot.go)
	cmdSet     bool    // WithCmd was given
	pgSet      bool    // WithPostgresSetting was given
	errs       []error // options that do not apply
	// build completes the definition once the suite's secret is known.
	build func(s *Service, secret string)
}

// Name is the service's name, unique in an environment ("postgres",
// "redis", or the name given to Generic).
func (s Service) Name() string { return s.name }

// Image is the image the service runs.
func (s Service) Image() string { return s.image }

// clone returns a deep copy, so that declaring a Service to two
// environments, or changing it afterwards, has no effect on either.
func (s Service) clone() Service {
	s.errs = slices.Clone(s.errs)
	s.ports = slices.Clone(s.ports)
	s.env = maps.Clone(s.env)
	s.entrypoint = slices.Clone(s.entrypoint)
	s.command = slices.Clone(s.command)
	s.tmpfs = maps.Clone(s.tmpfs)
	s.pgSettings = maps.Clone(s.pgSettings)
	s.resetCmd = slices.Clone(s.resetCmd)
	return s
}

// with returns the definition completed for a pod whose services use
// secret as their password.
func (s *Service) with(secret string) *Service {
	c := s.clone()
	if c.build != nil {
		c.build(&c, secret)
	}
	return &c
}

// definition is a stable text of everything that decides what the container
// is, for the config hash label.
func (s Service) definition() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%v|%q|%q|", s.name, s.image, s.ports, s.entrypoint, s.command)
	for _, m := range []map[string]string{s.env, s.tmpfs, s.pgSettings} {
		keys := slices.Sorted(maps.Keys(m))
		for _, k := range keys {
			if k == "POSTGRES_PASSWORD" || k == "MARIADB_ROOT_PASSWORD" {
				continue // the secret differs per suite, not the definition
			}
			fmt.Fprintf(&b, "%s=%s;", k, m[k])
		}
		b.WriteString("|")
	}
	return b.String()
}

// Option changes a Service; the With… functions make them. An option that
// does not apply to the service it is given to is an error that New (or
// Main) reports, not ignored.
type Option func(*Service)

// WithImage sets the image. Default: the service's pinned official image
// (Postgres, Redis); Generic takes it as an argument.
func WithImage(ref string) Option { return func(s *Service) { s.image = ref } }

// WithPort adds container ports to publish on the bind address (a free
// host port each, picked by the engine). The first is the service's main
// port. Postgres has 5432 and Redis 6379 already.
func WithPort(ports ...uint16) Option {
	return func(s *Service) { s.ports = append(s.ports, ports...) }
}

// WithEnv sets an environment variable of the container.
func WithEnv(key, value string) Option {
	return func(s *Service) {
		if s.env == nil {
			s.env = map[string]string{}
		}
		s.env[key] = value
	}
}

// WithCmd replaces the container's command (the image's CMD). On Postgres
// it replaces the test settings too, so it cannot go with
// WithPostgresSetting.
func WithCmd(args ...string) Option {
	return func(s *Service) { s.command = args; s.cmdSet = true }
}

// WithEntrypoint replaces the image's entrypoint.
func WithEntrypoint(args ...string) Option { return func(s *Service) { s.entrypoint = args } }

// WithTmpfs mounts a tmpfs at path with the given mount options (e.g.
// "rw,size=256m,mode=1777"; "" for Podman's defaults). Postgres has one on
// its data directory already.
func WithTmpfs(path, options string) Option {
	return func(s *Service) {
		if s.tmpfs == nil {
			s.tmpfs = map[string]string{}
		}
		s.tmpfs[path] = options
	}
}

// WithoutTmpfs removes the service's tmpfs mounts: Postgres then keeps its
// data on disk, as in production (2–7× slower per test; see README).
func WithoutTmpfs() Option { return func(s *Service) { s.tmpfs = nil } }

// WithReady sets the readiness probe, run until it succeeds after the
// container starts. Default: Postgres SELECT 1, Redis PING, a TCP connect
// to the first port of a Generic service (running, when it has none).
func WithReady(probe func(c *Container) healthcheck.Probe) Option {
	return func(s *Service) { s.ready = probe }
}

// WithHealth sets the probe run before a container is reused (at most once
// per container_health_check_interval). Default: the readiness probe.
// Prefer a network probe: an exec costs 150–200 ms.
func WithHealth(probe func(c *Container) healthcheck.Probe) Option {
	return func(s *Service) { s.health = probe }
}

// WithReset sets the function Environment.Reset runs for this service,
// instead of its default (Postgres: empty every table; Redis: flush the
// databases no test holds; NATS: delete the streams no test holds;
// RabbitMQ: delete the vhosts no test holds) or a
// WithResetCommand.
func WithReset(fn func(ctx context.Context, c *Container) error) Option {
	return func(s *Service) { s.reset = fn; s.resetCmd = nil }
}

// WithResetCommand makes Environment.Reset run cmd inside the container (it
// must exit 0), instead of a WithReset function. Execs are slow (150–200
// ms): prefer WithReset over the network.
func WithResetCommand(cmd ...string) Option {
	return func(s *Service) { s.resetCmd = cmd; s.reset = nil }
}

// WithSnapshot makes the service's first ready state a local image that
// later cold starts use (see the package documentation). For services
// that initialise data on their first start into a tmpfs mount, as
// Postgres does (on by default there).
func WithSnapshot() Option { return func(s *Service) { s.snapshot = true } }

// WithoutSnapshot turns snapshots off for the service.
func WithoutSnapshot() Option { return func(s *Service) { s.snapshot = false } }

// WithPostgresSetting sets a server setting of Postgres (postgres -c
// name=value), over the test defaults (fsync, synchronous_commit and
// full_page_writes off, max_connections 300). For Postgres only, and not
// with WithCmd, which replaces the command the settings go on.
func WithPostgresSetting(name, value string) Option {
	return func(s *Service) {
		if s.kind != "postgres" {
			s.errs = append(s.errs, fmt.Errorf("WithPostgresSetting(%q, …) applies to Postgres only", name))
			return
		}
		if s.pgSettings == nil {
			s.pgSettings = map[string]string{}
		}
		s.pgSettings[name] = value
		s.pgSet = true
	}
}

// defaultPostgresSettings tune Postgres for tests (WithPostgresSetting
// changes them).
var defaultPostgresSettings = map[string]string{
	"fsync":              "off",
	"synchronous_commit": "off",
	"full_page_writes":   "off",
	"max_connections":    "300",
}

// The user and database of the Postgres service.
const (
	postgresUser     = "cleanroom"
	postgresDatabase = "cleanroom"
	postgresPort     = 5432
	redisPort        = 6379
)

// Postgres is a PostgreSQL service named "postgres", tuned for tests:
// data on tmpfs, fsync, synchronous_commit and full_page_writes off,
// max_connections 300, a random password per suite. Every part can be
// changed with options (WithImage, WithPostgresSetting, WithoutTmpfs, WithEnv, …).
func Postgres(opts ...Option) Service {
	s := Service{
		name:  "postgres",
		kind:  "postgres",
		image: DefaultPostgresImage,
		ports: []uint16{postgresPort},
		env: map[string]string{
			"POSTGRES_USER": postgresUser,
			"POSTGRES_DB":   postgresDatabase,
			// A directory inside the tmpfs mount: the mount point itself
			// cannot be chmod-ed by the non-root server.
			"PGDATA": "/var/lib/postgresql/data/pgdata",
			// 1 MB WAL segments instead of 16 MB: a third less data to
			// initialise, and to copy into tmpfs on a snapshot start.
			"POSTGRES_INITDB_ARGS": "--wal-segsize=1",
		},
		tmpfs:      map[string]string{"/var/lib/postgresql/data": "rw,mode=1777"},
		pgSettings: maps.Clone(defaultPostgresSettings),
		// The probe connects to the maintenance database, so that its kept
		// connection never stands in the way of the application database.
		ready:    func(c *Container) healthcheck.Probe { return healthcheck.Postgres(postgresURLOf(c, "postgres")) },
		reset:    resetPostgres,
		snapshot: true,
		build: func(s *Service, secret string) {
			if s.env["POSTGRES_PASSWORD"] == "" {
				s.env["POSTGRES_PASSWORD"] = secret
			}
			if s.command == nil {
				s.command = []string{"postgres"}
				for _, k := range slices.Sorted(maps.Keys(s.pgSettings)) {
					s.command = append(s.command, "-c", k+"="+s.pgSettings[k])
				}
			}
		},
	}
	for _, o := range opts {
		o(&s)
	}
	return s
}

// Redis is a Redis service named "redis": no persistence, a random password
// per suite (requirepass), 64 logical databases.
func Redis(opts ...Option) Service {
	s := Service{
		name:  "redis",
		kind:  "redis",
		image: DefaultRedisImage,
		ports: []uint16{redisPort},
		env:   map[string]string{},
		ready: func(c *Container) healthcheck.Probe {
			return healthcheck.Redis(c.Addr(redisPort), c.secret)
		},
		reset: resetRedis,
		build: func(s *Service, secret string) {
			if s.command == nil {
				// 64 logical databases: one per parallel test (RedisServer.DB).
				s.command = []string{"redis-server", "--save", "", "--appendonly", "no", "--databases", "64", "--requirepass", secret}
			}
		},
	}
	for _, o := range opts {
		o(&s)
	}
	return s
}

// Generic is any image as a service. Give it ports with WithPort; its default
// readiness probe is a TCP connect to the first port. On rootless Podman
// that is a heuristic: the port forwarder accepts connections to ports
// nothing listens on and hangs up later (0.2 s idle, more under load), so
// the probe waits half a second for that (healthcheck.TCPSettle). Set a
// protocol probe with WithReady (HTTP, Postgres, Redis, your own) wherever you
// can. Without ports, a running container counts as ready.
func Generic(name, image string, opts ...Option) Service {
	s := Service{name: name, kind: "generic", image: image, env: map[string]string{}}
	for _, o := range opts {
		o(&s)
	}
	return s
}

func (s *Service) validate() error {
	if len(s.errs) > 0 {
		return fmt.Errorf("service %s: %w", s.name, errors.Join(s.errs...))
	}
	if v := s.env["RABBITMQ_DEFAULT_VHOST"]; s.kind == "rabbitmq" && v != "" && v != "/" {
		return fmt.Errorf("service %s: RABBITMQ_DEFAULT_VHOST=%q would leave the server without vhost \"/\", which its URL, readiness probe and Reset use; leave it unset and give each test a vhost of its own with RabbitMQVhost(t)", s.name, v)
	}
	if s.cmdSet && s.pgSet {
		return fmt.Errorf("service %s: WithPostgresSetting has no effect with WithCmd, which replaces the command the settings go on; put the -c flags in the command", s.name)
	}
	if !serviceNameRE.MatchString(s.name) {
		return fmt.Errorf("service name %q: use lower-case letters, digits and dashes, starting with a letter (at most 31)", s.name)
	}
	if strings.TrimSpace(s.image) == "" {
		return fmt.Errorf("service %s: no image", s.name)
	}
	seen := map[uint16]bool{}
	for _, p := range s.ports {
		if p == 0 {
			return fmt.Errorf("service %s: port 0 is not a port", s.name)
		}
		if seen[p] {
			return fmt.Errorf("service %s: port %d given twice", s.name, p)
		}
		seen[p] = true
	}
	return nil
}

// readyProbe and healthProbe apply the defaults.
func (s *Service) readyProbe(c *Container) healthcheck.Probe {
	if s.ready != nil {
		return s.ready(c)
	}
	if len(s.ports) > 0 {
		return healthcheck.TCPSettle(c.Addr(s.ports[0]), c.tcpSettle())
	}
	return nil // running is ready
}

func (s *Service) healthProbe(c *Container) healthcheck.Probe {
	if s.health != nil {
		return s.health(c)
	}
	return s.readyProbe(c)
}

func postgresURL(c *Container) string { return postgresURLOf(c, c.Env("POSTGRES_DB")) }

func postgresURLOf(c *Container, db string) string {
	return c.Postgres().urlOf(db)
}

// resetPostgres empties every table of every user schema (RESTART IDENTITY
// CASCADE) and resets search_path settings of the database and the role,
// so that a test's ALTER … SET search_path does not leak either.
func resetPostgres(ctx context.Context, c *Container) error {
	conn, err := pgx.Connect(ctx, postgresURL(c))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := isolation.Truncate(ctx, conn); err != nil {
		return err
	}
	for _, stmt := range []string{
		"RESET search_path",
		`ALTER DATABASE ` + pgx.Identifier{c.Env("POSTGRES_DB")}.Sanitize() + ` RESET search_path`,
		`ALTER ROLE ` + pgx.Identifier{c.Env("POSTGRES_USER")}.Sanitize() + ` RESET search_path`,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}

// resetRedis is FLUSHDB on every logical database but those leased to a
// test (RedisDB) and the lease records: the suite's Redis is
// shared by every test process of the run, and a FLUSHALL would hand a
// leased database to a second test.
func resetRedis(ctx context.Context, c *Container) error {
	return isolate.FlushUnleased(ctx, &redis.Options{Addr: c.Addr(redisPort), Password: c.secret, MaxRetries: -1})
}
