// Package shop is a small application used as Cleanroom's example: a users
// store on PostgreSQL (users), a rate limiter on Redis (ratelimit), a job
// queue on both (jobs); its order service, on MariaDB and NATS, is
// examples/orders. Each package's tests start from
//
//	func TestMain(m *testing.M) {
//		cleanroom.Main(m, cleanroom.Postgres(), cleanroom.Redis())
//	}
//
// and take the suite's servers with cleanroom.PostgresFor(t),
// cleanroom.RedisFor(t) and the per-test helpers: all of them share one
// pod. Run them with `make demo`.
package shop
