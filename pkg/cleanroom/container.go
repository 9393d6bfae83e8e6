package cleanroom

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Container is a running service container as a test sees it: where to
// reach it and what it was started with. Its fields do not change; a
// replaced container is a new *Container.
type Container struct {
	Service string    // the service name, e.g. "postgres"
	ID      string    // engine container ID
	Name    string    // engine container name
	PodID   string    // engine pod ID
	PodName string    // engine pod name
	Image   string    // image reference it runs
	Created time.Time // when it was created (its age counts from here)
	// ReadyIn is how long the container took from its start to ready; 0
	// for a container this process adopted.
	ReadyIn time.Duration

	host   string            // host address its ports are published on
	ports  map[uint16]uint16 // container port → host port
	env    map[string]string
	secret string
	owner  *Environment // closes what is opened lazily below

	poolOnce sync.Once
	pool     *pgxpool.Pool
	poolErr  error
	sqlOnce  sync.Once // MariaDB: a database/sql handle, for MariaDBTx
	sqlDB    *sql.DB
	sqlErr   error
}

// Host is the address the container's ports are published on (127.0.0.1
// for a local engine).
func (c *Container) Host() string { return c.host }

// Port returns the host port that containerPort is published on, or 0 when
// it is not published.
func (c *Container) Port(containerPort uint16) uint16 { return c.ports[containerPort] }

// Addr returns "host:port" for containerPort.
func (c *Container) Addr(containerPort uint16) string {
	return net.JoinHostPort(c.host, strconv.Itoa(int(c.Port(containerPort))))
}

// Env returns the value of an environment variable the container was
// started with.
func (c *Container) Env(key string) string { return c.env[key] }

// Exec runs cmd in the container and returns its exit code and output
// (stdout, then stderr): a healthcheck.ExecFunc. An exec through the API
// costs 150–200 ms and slows the removal of the container's pod by
// seconds; prefer network probes.
func (c *Container) Exec(ctx context.Context, cmd []string) (int, string, error) {
	if c.owner == nil {
		return 0, "", fmt.Errorf("cleanroom: exec in %s: the container has no environment", c.Name)
	}
	res, err := c.owner.eng.Exec(ctx, c.ID, cmd)
	if err != nil {
		return 0, "", err
	}
	return res.ExitCode, string(res.Stdout) + string(res.Stderr), nil
}

// Logs returns the lines the container has written so far: a
// healthcheck.LogsFunc.
func (c *Container) Logs(ctx context.Context) ([]string, error) {
	if c.owner == nil {
		return nil, fmt.Errorf("cleanroom: logs of %s: the container has no environment", c.Name)
	}
	return c.owner.eng.Logs(ctx, c.ID, 0)
}

// Postgres views the container as a PostgreSQL server: for a container of
// the Postgres service got with Environment.Get (PostgresFor gives it to a
// test).
func (c *Container) Postgres() *PostgresServer { return &PostgresServer{c: c} }

// Redis views the container as a Redis server: for a container of the
// Redis service got with Environment.Get (RedisFor gives it to a test).
func (c *Container) Redis() *RedisServer { return &RedisServer{c: c} }

// PostgresServer is the suite's PostgreSQL server: where it is and how to
// log in. Share it freely between parallel tests; give each its own data
// with NewDatabase, NewSchema or Tx.
type PostgresServer struct{ c *Container }

// Container is the container behind the server.
func (p *PostgresServer) Container() *Container { return p.c }

// Host is the address the server is published on (the bind address,
// 127.0.0.1 by default).
func (p *PostgresServer) Host() string { return p.c.Host() }

// Port is the host port of the server.
func (p *PostgresServer) Port() uint16 { return p.c.Port(postgresPort) }

// User is the superuser's name ("cleanroom" unless POSTGRES_USER is set).
func (p *PostgresServer) User() string { return p.c.Env("POSTGRES_USER") }

// Password is the superuser's password, random per suite.
func (p *PostgresServer) Password() string { return p.c.Env("POSTGRES_PASSWORD") }

// Database is the database created at start ("cleanroom" unless
// POSTGRES_DB is set).
func (p *PostgresServer) Database() string { return p.c.Env("POSTGRES_DB") }

// URL is a connection URL of Database for pgx, lib/pq and psql:
// postgres://user:password@127.0.0.1:port/db?sslmode=disable.
func (p *PostgresServer) URL() string { return p.urlOf(p.Database()) }

func (p *PostgresServer) urlOf(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(p.User(), p.Password()),
		Host:     p.c.Addr(postgresPort),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// sharedPool is a connection pool on Database shared by every test of this
// process (at most 10 connections), for Tx; it is closed with the
// environment.
func (p *PostgresServer) sharedPool() (*pgxpool.Pool, error) {
	c := p.c
	c.poolOnce.Do(func() {
		cfg, err := pgxpool.ParseConfig(p.URL())
		if err != nil {
			c.poolErr = err
			return
		}
		cfg.MaxConns = 10
		c.pool, c.poolErr = pgxpool.NewWithConfig(context.Background(), cfg)
		if c.poolErr == nil && c.owner != nil {
			c.owner.onClose(c.pool.Close)
		}
	})
	return c.pool, c.poolErr
}

// RedisServer is the suite's Redis server: where it is and its password.
// Give each test a database of its own with RedisDB.
type RedisServer struct{ c *Container }

// Container is the container behind the server.
func (r *RedisServer) Container() *Container { return r.c }

// Addr is "host:port" for go-redis's Options.Addr.
func (r *RedisServer) Addr() string { return r.c.Addr(redisPort) }

// Password is the server's requirepass, random per suite.
func (r *RedisServer) Password() string { return r.c.secret }

// Options are go-redis options for database 0 of the server.
func (r *RedisServer) Options() *redis.Options {
	return &redis.Options{Addr: r.Addr(), Password: r.Password()}
}

// URL is redis://:password@host:port/0, for redis.ParseURL.
func (r *RedisServer) URL() string {
	u := url.URL{Scheme: "redis", User: url.UserPassword("", r.Password()), Host: r.Addr(), Path: "/0"}
	return u.String()
}

// tcpSettle is how long a TCP probe waits for a hang-up: rootless Podman's
// port forwarder accepts first and closes ~0.2 s later when nothing listens.
func (c *Container) tcpSettle() time.Duration {
	if c.owner != nil && c.owner.rootless != nil && c.owner.rootless() {
		return 500 * time.Millisecond
	}
	return 50 * time.Millisecond
}

// String names the container for messages: "service (name in pod pod-name)".
func (c *Container) String() string {
	return fmt.Sprintf("%s (%s in pod %s)", c.Service, c.Name, c.PodName)
}
