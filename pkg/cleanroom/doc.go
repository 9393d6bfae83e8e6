// Package cleanroom starts the service containers of an integration test
// suite (PostgreSQL, Redis, any image) once, in one Podman pod, shares them
// between the suite's tests, checks their health before reuse, and removes
// them when the tests end.
//
//	package store_test
//
//	import (
//		"os"
//		"testing"
//
//		"github.com/cleanroom-go/cleanroom/pkg/cleanroom"
//		"github.com/cleanroom-go/cleanroom/pkg/isolation"
//	)
//
//	var migrations = isolation.SQLDir(os.DirFS("testdata"), "migrations")
//
//	func TestMain(m *testing.M) {
//		cleanroom.Main(m, cleanroom.Postgres(), cleanroom.Redis())
//	}
//
//	func TestSignup(t *testing.T) {
//		t.Parallel()
//		db := cleanroom.NewDatabase(t, migrations) // a database of its own, migrated, dropped with the test
//		rdb := cleanroom.RedisDB(t)                // a Redis database of its own, flushed with the test
//		if _, err := db.Pool().Exec(t.Context(), "INSERT INTO users (email) VALUES ('a@example.com')"); err != nil {
//			t.Fatal(err)
//		}
//		rdb.Set(t.Context(), "signup:a@example.com", "1", 0)
//	}
//
// NewSchema (a schema of its own) and Tx (a transaction rolled back with
// the test) are the cheaper isolation modes; PostgresFor, RedisFor and
// ContainerFor give the servers themselves (URL, host, port, password).
// Declare NATS() for a NATS server with JetStream: NATSPrefix gives a test
// subjects and streams of its own, NATSFor the server. Declare RabbitMQ()
// for a RabbitMQ server: RabbitMQVhost gives a test a virtual host of its
// own, RabbitMQFor the server.
//
// # How it works
//
// Main (or New and Environment.Run, for a custom TestMain or a program)
// declares the services up front, because a pod's published ports are
// fixed when it is created; the first test to ask for any of them starts
// all of them at once, none waiting for another's start-up. The services
// share the pod's network namespace (they reach each other on localhost)
// and publish their ports on 127.0.0.1 with host ports the engine picks,
// so parallel suites never collide.
//
// Before a container is reused, its health probe runs (Postgres SELECT 1,
// Redis PING, TCP, or your own) unless the last good probe is younger than
// container_health_check_interval. The probe runs on a context of its own
// and holds no lock: a caller whose context is done gets its own error and
// never condemns the container. A failed probe of a running container is
// tried once more; a container that fails twice, stopped or vanished is
// replaced, and the replacement is printed on stderr. A container older
// than max_container_reuse_time is replaced at the next attach at which no
// test of this process is using it, also when adopted. Start-up (pull,
// create, start, ready) is bounded by container_startup_timeout; its error
// says whether the container stopped or timed out (it wraps
// context.DeadlineExceeded then) and carries its last 50 log lines.
//
// With enable_singleton_containers = false every PostgresFor/RedisFor/
// ContainerFor call gets a pod of its own, removed when the test ends; the
// same happens when a shared container cannot be created, said on stderr,
// until a test tries the shared container again (after 10 s, then twice as
// long each time, up to 2 min).
//
// # Configuration
//
// cleanroom.toml, found by walking up from the package directory to the
// module root, and CLEANROOM_<KEY> environment variables; see LoadConfig.
// No file is needed: the defaults work. CLEANROOM_DEBUG=1 logs every
// container event to stderr; CLEANROOM_SUMMARY=1 prints one line per test
// binary (ready times, containers started and reused).
//
// # One pod for the whole run, and clean-up
//
// The test processes of one `go test ./...` share the suite's pod: its name
// comes from the suite key (module root, service definitions and bind
// address, or Config.Suite), the engine's name uniqueness decides who
// creates it, and every other process adopts it. Each process holds a flock(2) lease while
// it runs; a reaper (the test binary re-executed, in a session of its own)
// removes the pod once no lease has been held for the grace period, or the
// keep-warm window of the newest process, and ends when the pod is gone.
// Close (called by Main after the tests, and on SIGINT or SIGTERM; a second
// signal exits at once) removes the pods only this process used and gives
// its lease back. Because the kernel drops a dead process's lock, SIGKILL,
// panics and -timeout end the same way; every service container also
// carries a run-time limit enforced by Podman's conmon (twice
// max_container_reuse_time plus the start-up timeout) for when even the
// reaper is killed, and the pod's infra container stops with the last of
// them (exit policy stop). Where no lease can be taken (the lease directory
// is not this user's, mode 0700, or is a link; no flock on the platform),
// a process keeps a pod of its own and says so on stderr. Every object carries
// the io.cleanroom.managed label; `make clean` and the cleanroom CLI never
// touch anything without it.
package cleanroom
