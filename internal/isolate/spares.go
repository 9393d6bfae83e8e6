package isolate

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Spare databases: once a template is built, a filler keeps a few
// clones of it ready (CREATE DATABASE … TEMPLATE takes ~20 ms; handing out
// a ready one, microseconds), and databases given back are dropped in the
// background. Clones are named tp_<owner>_<random>; the owner (one per
// Server) holds a Postgres advisory lock for as long as it lives, so a
// Server that opens later can tell the clones of a dead process from a
// live one's and drops them. Close drops this Server's unused clones.
//
// Advisory locks belong to a database: two sessions connected to different
// databases never see each other's. So every lock of this package (owner,
// sweep, template build) is taken on a connection to one fixed database,
// lockDatabase, whatever database the Server's URL names.

// DefaultSpares is how many ready clones a Server keeps per template.
// CLEANROOM_SPARE_DATABASES sets another number; 0 turns the spares off.
const DefaultSpares = 4

// spareCount reads CLEANROOM_SPARE_DATABASES.
func spareCount() (int, error) {
	v := os.Getenv("CLEANROOM_SPARE_DATABASES")
	if v == "" {
		return DefaultSpares, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 64 {
		return 0, fmt.Errorf("isolation: CLEANROOM_SPARE_DATABASES=%q: want a number of spare databases from 0 (none) to 64; unset it for the default, %d", v, DefaultSpares)
	}
	return n, nil
}

type spareSet struct {
	size    int
	owner   string
	lock    *pgx.Conn // holds the owner's advisory lock
	ctx     context.Context
	cancel  context.CancelFunc
	fillers sync.WaitGroup

	dropMu      sync.Mutex
	stopped     bool
	drops       chan string // databases to drop in the background
	dropped     sync.WaitGroup
	dropperDone chan struct{}
}

func ownerKey(owner string) int64 { return lockKey("cleanroom database pool " + owner) }

// lockKey is the advisory lock key of a name.
func lockKey(name string) int64 {
	sum := sha256.Sum256([]byte(name))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

// start takes the owner lock, drops the clones of dead owners and starts
// the background dropper.
func (w *spareSet) start(ctx context.Context, s *Server, size int) error {
	w.size = size
	w.owner = randomToken()[:8]
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.drops = make(chan string, 1024)
	w.dropperDone = make(chan struct{})
	go func() {
		defer close(w.dropperDone)
		for name := range w.drops {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			_ = s.DropDatabase(ctx, name)
			cancel()
			w.dropped.Done()
		}
	}()
	if size == 0 {
		return nil
	}
	conn, err := s.connectLocks(ctx)
	if err != nil {
		return fmt.Errorf("isolation: database pool: %w", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", ownerKey(w.owner)); err != nil {
		conn.Close(ctx)
		return fmt.Errorf("isolation: database pool: %w", err)
	}
	w.lock = conn
	if err := w.sweep(ctx, s); err != nil {
		w.lock = nil
		conn.Close(ctx)
		return fmt.Errorf("isolation: database pool: sweep the clones of ended processes: %w", err)
	}
	return nil
}

// keptComment marks a database KeepDatabase kept: no sweep drops it.
const keptComment = "cleanroom: kept for inspection after a failed test"

// KeepDatabase marks database name as kept for inspection, so that the
// sweep of a later Server does not take it for a dead process's spare clone.
func (s *Server) KeepDatabase(ctx context.Context, name string) error {
	if _, err := s.pool.Exec(ctx, "COMMENT ON DATABASE "+Quote(name)+" IS '"+keptComment+"'"); err != nil {
		return fmt.Errorf("isolation: keep database %s: %w", name, err)
	}
	return nil
}

// sweepKey is the advisory lock that makes sweeps take turns. Without it,
// a sweep that found a dead owner's lock taken (by another sweep, busy
// dropping) would skip that owner, and return before its clones are gone.
var sweepKey = lockKey("cleanroom database pool sweep")

// sweep drops the pooled clones whose owner holds no lock any more, except
// those kept for inspection. Sweeps take turns (sweepKey), so when sweep
// returns, no clone of an owner that was gone when it began is left.
//
// Which clones an owner has is read only once its lock is ours: a clone
// listed before that could be marked kept by its (then live) owner in the
// meantime, and dropping it would lose a failed test's database.
func (w *spareSet) sweep(ctx context.Context, s *Server) error {
	if _, err := w.lock.Exec(ctx, "SELECT pg_advisory_lock($1)", sweepKey); err != nil {
		return err
	}
	defer func() {
		_, _ = w.lock.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", sweepKey)
	}()
	names, err := clones(ctx, s.pool, `tp\_%`)
	if err != nil {
		return err
	}
	owners := map[string]bool{}
	for _, n := range names {
		parts := strings.SplitN(n, "_", 3)
		if len(parts) == 3 && parts[1] != w.owner && ownerRE.MatchString(parts[1]) {
			owners[parts[1]] = true
		}
	}
	for owner := range owners {
		var free bool
		if err := w.lock.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", ownerKey(owner)).Scan(&free); err != nil {
			return err
		}
		if !free {
			continue // alive: not ours to touch
		}
		dbs, err := clones(ctx, s.pool, `tp\_`+owner+`\_%`)
		if err == nil {
			for _, db := range dbs {
				if err = s.DropDatabase(ctx, db); err != nil {
					break
				}
			}
		}
		_, _ = w.lock.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", ownerKey(owner))
		if err != nil {
			return err
		}
	}
	return nil
}

// ownerRE matches the owner part of a clone's name (randomToken()[:8]).
var ownerRE = regexp.MustCompile(`^[0-9a-f]{8}$`)

// clones lists the databases whose name is LIKE pattern and that no one
// kept for inspection.
func clones(ctx context.Context, q Querier, pattern string) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE $1
		AND coalesce(shobj_description(oid, 'pg_database'), '') <> $2`, pattern, keptComment)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// fill starts keeping clones of tpl ready. Called once per template.
func (w *spareSet) fill(s *Server, tpl string, st *templateState) {
	if w.size == 0 {
		return
	}
	st.clones = make(chan string, w.size)
	st.wake = make(chan struct{}, 1)
	w.fillers.Add(1)
	go func() {
		defer w.fillers.Done()
		for {
			for len(st.clones) < cap(st.clones) {
				name := "tp_" + w.owner + "_" + randomToken()
				// Not cancelled by stop: a CREATE DATABASE cancelled in
				// flight may still complete on the server, after the
				// client gave up on it, and leave a clone nobody drops.
				// stop waits for this one (about 20 ms) instead.
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				_, err := s.pool.Exec(ctx, cloneSQL(s.version, name, tpl))
				cancel()
				if w.ctx.Err() != nil {
					if err == nil {
						w.dropLater(s, name)
					}
					return
				}
				if err != nil {
					time.Sleep(100 * time.Millisecond) // the server is busy or restarting
					continue
				}
				st.clones <- name
			}
			select {
			case <-w.ctx.Done():
				return
			case <-st.wake:
			}
		}
	}()
}

// take hands out a ready clone of tpl, if there is one, and asks for more.
func (w *spareSet) take(s *Server, tpl string) (string, bool) {
	s.mu.Lock()
	st := s.templates[tpl]
	s.mu.Unlock()
	if st == nil || st.clones == nil {
		return "", false
	}
	defer func() {
		select {
		case st.wake <- struct{}{}:
		default:
		}
	}()
	select {
	case name := <-st.clones:
		return name, true
	default:
		return "", false
	}
}

// dropLater queues a database to be dropped in the background; after
// stop, it drops it at once.
func (w *spareSet) dropLater(s *Server, name string) {
	w.dropMu.Lock()
	if w.stopped {
		w.dropMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = s.DropDatabase(ctx, name)
		return
	}
	w.dropped.Add(1)
	w.dropMu.Unlock()
	w.drops <- name
}

// stop ends the filler, drops the unused clones and everything queued,
// and releases the owner lock.
func (w *spareSet) stop(s *Server) {
	w.cancel()
	w.fillers.Wait() // no clone is made after this
	s.mu.Lock()
	states := make([]*templateState, 0, len(s.templates))
	for _, st := range s.templates {
		states = append(states, st)
	}
	s.mu.Unlock()
	for _, st := range states {
		if st.clones == nil {
			continue
		}
	drain:
		for {
			select {
			case name := <-st.clones:
				w.dropLater(s, name)
			default:
				break drain
			}
		}
	}
	w.dropMu.Lock()
	w.stopped = true
	w.dropMu.Unlock()
	w.dropped.Wait()
	close(w.drops)
	<-w.dropperDone
	if w.lock != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		w.lock.Close(ctx)
		cancel()
	}
}

// DropDatabaseLater drops a database in the background (as DropDatabase);
// Close waits for it.
func (s *Server) DropDatabaseLater(name string) { s.spares.dropLater(s, name) }

// SpareClones is how many ready clones the Server holds now (all templates).
func (s *Server) SpareClones() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, st := range s.templates {
		n += len(st.clones)
	}
	return n
}

// ClonePrefix starts the names of this Server's spare clones.
func (s *Server) ClonePrefix() string { return "tp_" + s.spares.owner + "_" }

// Flush waits until every database queued by DropDatabaseLater is gone.
func (s *Server) Flush() { s.spares.dropped.Wait() }

// FlushAll waits for the background drops of the TB helpers' Servers.
func FlushAll() {
	for _, s := range openServers(false) {
		s.Flush()
	}
}

// CloseAll closes the Servers the TB helpers opened (NewDatabase,
// NewSchema): unused spare clones are dropped, and so is every database
// still waiting to be. Call it at the end of TestMain; cleanroom.Main does.
func CloseAll() {
	for _, s := range openServers(true) {
		s.Close()
	}
}
