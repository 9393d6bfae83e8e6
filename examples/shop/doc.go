// Package shop is a small application used as Cleanroom's example: a users
// store on PostgreSQL (users), a rate limiter on Redis (ratelimit) and a job
// queue on both (jobs). Each package's tests start from
//
//	func TestMain(m *testing.M) {
//		cleanroom.Main(m, cleanroom.Postgres(), cleanroom.Redis())
//	}
//
// and take the suite's servers with cleanroom.PostgresFor(t) and
// cleanroom.RedisFor(t). Run them with `make demo`.
package shop
