package isolate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// LeaseKeyPrefix starts the keys (in logical database 0) that record which
// logical database is leased to which test.
const LeaseKeyPrefix = "cleanroom:lease:db:"

// Lease timing: a lease lives leaseTTL unless renewed; the holder renews it
// every leaseTTL/3, so a crashed process frees its database within leaseTTL.
// CLEANROOM_REDIS_LEASE_TTL (seconds) sets another TTL: longer where test
// processes may be paused that long (a debugger), shorter to free the
// databases of crashed processes sooner.
const defaultLeaseTTL = 30 * time.Second

var leasePoll = 20 * time.Millisecond

// LeaseTTLEnv names the variable that sets the lease TTL in seconds.
const LeaseTTLEnv = "CLEANROOM_REDIS_LEASE_TTL"

func leaseTTL() time.Duration {
	if v := os.Getenv(LeaseTTLEnv); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	return defaultLeaseTTL
}

// RedisLease is a logical database leased to one user.
type RedisLease struct {
	DB     int           // the logical database number
	Client *redis.Client // a client on DB

	admin *redis.Client // on database 0, where the lease key lives
	key   string
	token string
	ttl   time.Duration
	stop  chan struct{}
	once  sync.Once
	err   error

	mu   sync.Mutex
	lost error // why the lease is no longer this holder's
}

// Err says whether the lease is still held: nil, or why it was lost (its
// key expired or went to another holder: the process was paused longer
// than the TTL, or Redis was replaced). A test whose lease was lost may
// have shared its database with another one.
func (l *RedisLease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// compare-and-delete and compare-and-extend, so that a lease that expired
// and went to someone else is never touched.
var (
	releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
	renewScript   = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)
)

// LeaseDB leases a logical database of the server that opts describe (its
// DB field is ignored) for as long as the lease is held: leases live in the
// server itself (SET NX with an expiry, renewed while held), so parallel
// test processes never share a database, and a crashed holder's lease
// expires. Database 0 is never leased (it holds the leases). The database
// is flushed when leased and when released. When every database is leased,
// LeaseDB waits for one up to ctx's deadline.
func LeaseDB(ctx context.Context, opts *redis.Options, owner string) (*RedisLease, error) {
	adminOpts := *opts
	adminOpts.DB = 0
	admin := redis.NewClient(&adminOpts)
	n, err := databases(ctx, admin)
	if err != nil {
		admin.Close()
		return nil, fmt.Errorf("isolation: lease a redis database: %w", err)
	}
	if n < 2 {
		admin.Close()
		return nil, fmt.Errorf("isolation: lease a redis database: the server has %d logical database(s); use isolation.RedisPrefix instead", n)
	}
	token := owner + "/" + randomToken()
	ttl := leaseTTL()
	start := time.Now()
	for {
		for db := 1; db < n; db++ {
			key := LeaseKeyPrefix + strconv.Itoa(db)
			ok, err := admin.SetNX(ctx, key, token, ttl).Result()
			if err != nil {
				admin.Close()
				return nil, fmt.Errorf("isolation: lease redis database %d: %w", db, err)
			}
			if !ok {
				continue
			}
			dbOpts := *opts
			dbOpts.DB = db
			l := &RedisLease{DB: db, Client: redis.NewClient(&dbOpts), admin: admin, key: key, token: token, ttl: ttl, stop: make(chan struct{})}
			// What a crashed holder left behind goes first.
			if err := l.Client.FlushDB(ctx).Err(); err != nil {
				_ = l.Release(context.WithoutCancel(ctx))
				return nil, fmt.Errorf("isolation: flush leased redis database %d: %w", db, err)
			}
			go l.renew()
			return l, nil
		}
		select {
		case <-ctx.Done():
			admin.Close()
			return nil, fmt.Errorf("isolation: lease a redis database: all %d are leased to other tests after %s (%w); "+
				"raise the server's databases setting, lower test parallelism, or use isolation.RedisPrefix",
				n-1, time.Since(start).Round(time.Millisecond), ctx.Err())
		case <-time.After(leasePoll):
		}
	}
}

func randomToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// databases asks the server how many logical databases it has; servers
// that refuse CONFIG are taken to have Redis' default, 16.
func databases(ctx context.Context, c *redis.Client) (int, error) {
	res, err := c.ConfigGet(ctx, "databases").Result()
	if err != nil {
		if strings.Contains(err.Error(), "unknown command") || strings.Contains(err.Error(), "NOPERM") {
			return 16, nil
		}
		return 0, err
	}
	n, err := strconv.Atoi(res["databases"])
	if err != nil {
		return 16, nil
	}
	return n, nil
}

// renew extends the lease every TTL/3 until Release. The lease is lost
// when a renewal finds the key gone or someone else's, or when no renewal
// succeeded for a whole TTL (the key has expired by then).
func (l *RedisLease) renew() {
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	renewed := time.Now()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
			n, err := renewScript.Run(ctx, l.admin, []string{l.key}, l.token, l.ttl.Milliseconds()).Int()
			cancel()
			var lost error
			switch {
			case err == nil && n == 1:
				renewed = time.Now()
				continue
			case err == nil:
				lost = fmt.Errorf("isolation: the lease of redis database %d was lost: its key expired or belongs to another holder (was the process paused longer than the lease's %s, or Redis replaced?); another test may have used the database", l.DB, l.ttl)
			case time.Since(renewed) >= l.ttl:
				lost = fmt.Errorf("isolation: the lease of redis database %d was lost: no renewal for %s (%w); another test may have used the database", l.DB, time.Since(renewed).Round(time.Millisecond), err)
			default:
				continue // try again at the next tick
			}
			l.mu.Lock()
			l.lost = lost
			l.mu.Unlock()
			return
		}
	}
}

// Release flushes the database, gives the lease back and closes the
// clients; a lost lease (see Err) is neither flushed nor given back, as the
// database may be another holder's now, and Release returns why it was
// lost. Calling it again returns the first result.
func (l *RedisLease) Release(ctx context.Context) error {
	l.once.Do(func() {
		close(l.stop)
		if lost := l.Err(); lost != nil {
			l.Client.Close()
			l.admin.Close()
			l.err = lost
			return
		}
		var errs []error
		if err := l.Client.FlushDB(ctx).Err(); err != nil {
			errs = append(errs, fmt.Errorf("flush redis database %d: %w", l.DB, err))
		}
		if err := releaseScript.Run(ctx, l.admin, []string{l.key}, l.token).Err(); err != nil {
			errs = append(errs, fmt.Errorf("release redis database %d: %w", l.DB, err))
		}
		errs = append(errs, l.Client.Close(), l.admin.Close())
		if err := errors.Join(errs...); err != nil {
			l.err = fmt.Errorf("isolation: %w", err)
		}
	})
	return l.err
}

// DeletePrefix deletes every key starting with prefix (SCAN and UNLINK; the
// prefix must not hold glob characters) and returns how many it deleted.
func DeletePrefix(ctx context.Context, c *redis.Client, prefix string) (int, error) {
	if strings.ContainsAny(prefix, `*?[]\`) {
		return 0, fmt.Errorf("isolation: delete keys %q: the prefix holds glob characters", prefix)
	}
	var cursor uint64
	n := 0
	for {
		keys, next, err := c.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return n, fmt.Errorf("isolation: delete keys %s*: %w", prefix, err)
		}
		if len(keys) > 0 {
			if err := c.Unlink(ctx, keys...).Err(); err != nil {
				return n, fmt.Errorf("isolation: delete keys %s*: %w", prefix, err)
			}
			n += len(keys)
		}
		if next == 0 {
			return n, nil
		}
		cursor = next
	}
}

// FlushUnleased empties the server that opts describe (its DB field is
// ignored) as FLUSHDB on each logical database would, except for what
// leases hold: a database leased by LeaseDB keeps its data, and database 0
// keeps the lease records, so a test holding a lease is not disturbed. A
// database leased while FlushUnleased runs may still be flushed, as
// LeaseDB itself flushes it.
func FlushUnleased(ctx context.Context, opts *redis.Options) error {
	o := *opts
	o.DB = 0
	admin := redis.NewClient(&o)
	defer admin.Close()
	n, err := databases(ctx, admin)
	if err != nil {
		return fmt.Errorf("isolation: flush redis: %w", err)
	}
	conn := admin.Conn()
	defer conn.Close()
	for db := 0; db < n; db++ {
		if db > 0 {
			held, err := admin.Exists(ctx, LeaseKeyPrefix+strconv.Itoa(db)).Result()
			if err != nil {
				return fmt.Errorf("isolation: flush redis database %d: %w", db, err)
			}
			if held > 0 {
				continue
			}
			if err := conn.Select(ctx, db).Err(); err != nil {
				return fmt.Errorf("isolation: flush redis database %d: %w", db, err)
			}
			if err := conn.FlushDB(ctx).Err(); err != nil {
				return fmt.Errorf("isolation: flush redis database %d: %w", db, err)
			}
			continue
		}
		if err := deleteAllBut(ctx, admin, LeaseKeyPrefix); err != nil {
			return err
		}
	}
	return nil
}

// deleteAllBut deletes every key of c's database that does not start with
// keep.
func deleteAllBut(ctx context.Context, c *redis.Client, keep string) error {
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, "*", 1000).Result()
		if err != nil {
			return fmt.Errorf("isolation: flush redis database 0: %w", err)
		}
		del := keys[:0]
		for _, k := range keys {
			if !strings.HasPrefix(k, keep) {
				del = append(del, k)
			}
		}
		if len(del) > 0 {
			if err := c.Unlink(ctx, del...).Err(); err != nil {
				return fmt.Errorf("isolation: flush redis database 0: %w", err)
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}
