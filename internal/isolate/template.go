package isolate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/cleanroom-go/cleanroom/internal/runid"
)

// templateName is derived from the migration hash.
func templateName(m Migrator) (string, error) {
	h, err := m.Hash()
	if err != nil {
		return "", fmt.Errorf("isolation: migration hash: %w", err)
	}
	if h == "" {
		return "", errors.New("isolation: the migrator's hash is empty")
	}
	sum := sha256.Sum256([]byte(h))
	return "tpl_" + hex.EncodeToString(sum[:])[:24], nil
}

func rebuildRequested() bool {
	v := os.Getenv("CLEANROOM_REBUILD")
	return v != "" && v != "0" && v != "false"
}

// ensureTemplate returns the name of the finished template for m, building
// it when needed.
func (s *Server) ensureTemplate(ctx context.Context, m Migrator) (string, error) {
	tpl, err := templateName(m)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	st := s.templates[tpl]
	if st == nil {
		st = &templateState{}
		s.templates[tpl] = st
	}
	s.mu.Unlock()

	st.mu.Lock() // one check (or build) per template at a time in this process
	defer st.mu.Unlock()
	if st.ready {
		return tpl, nil
	}
	if err := s.buildTemplate(ctx, tpl, m, rebuildRequested()); err != nil {
		return "", err
	}
	st.ready = true
	s.spares.fill(s, tpl, st)
	return tpl, nil
}

// buildTemplate builds tpl under a session advisory lock unless another
// process finished it already (or rebuild asks to start over).
func (s *Server) buildTemplate(ctx context.Context, tpl string, m Migrator, rebuild bool) error {
	lock, err := s.connectLocks(ctx)
	if err != nil {
		return fmt.Errorf("isolation: template %s: %w", tpl, err)
	}
	defer lock.Close(context.WithoutCancel(ctx)) // ends the session: releases the lock
	if _, err := lock.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey("cleanroom template "+tpl)); err != nil {
		return fmt.Errorf("isolation: template %s: lock: %w", tpl, err)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("isolation: template %s: %w", tpl, err)
	}
	defer conn.Release()

	// CLEANROOM_REBUILD=1 rebuilds a template once per run: the first
	// process of the run to get here rebuilds it and stamps it with the
	// run; the others of the run (packages of one go test ./...) find the
	// stamp and clone it, instead of dropping it under each other.
	run := runid.ID()
	stamp := builtInRun + run
	var finished, exists bool
	var comment string
	err = conn.QueryRow(ctx, "SELECT datistemplate, coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = $1", tpl).Scan(&finished, &comment)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("isolation: template %s: %w", tpl, err)
	default:
		exists = true
	}
	if finished && (!rebuild || comment == stamp) {
		return nil
	}
	if exists { // unfinished (a crashed build) or a rebuild
		if _, err := conn.Exec(ctx, "ALTER DATABASE "+Quote(tpl)+" WITH IS_TEMPLATE false ALLOW_CONNECTIONS true"); err != nil {
			return fmt.Errorf("isolation: template %s: unmark: %w", tpl, err)
		}
		if err := dropDatabase(ctx, conn, s.version, tpl); err != nil {
			return fmt.Errorf("isolation: template %s: drop the old one: %w", tpl, err)
		}
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+Quote(tpl)); err != nil {
		return fmt.Errorf("isolation: template %s: create: %w", tpl, err)
	}
	u, err := withDatabase(s.url, tpl)
	if err != nil {
		return err
	}
	if err := migrate(ctx, u, m); err != nil {
		return fmt.Errorf("isolation: template %s: migrate: %w", tpl, err)
	}
	// The last step marks it finished; no connections may reach it after,
	// so that cloning never meets "being accessed by other users".
	if _, err := conn.Exec(ctx, "COMMENT ON DATABASE "+Quote(tpl)+" IS "+quoteLiteral(stamp)); err != nil {
		return fmt.Errorf("isolation: template %s: stamp: %w", tpl, err)
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+Quote(tpl)+" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"); err != nil {
		return fmt.Errorf("isolation: template %s: mark finished: %w", tpl, err)
	}
	return nil
}

// builtInRun starts the comment a template is stamped with: the run that
// built it.
const builtInRun = "cleanroom: template built in run "

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// migrate runs m through a database/sql handle on url, closed afterwards.
func migrate(ctx context.Context, url string, m Migrator) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return err
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	return m.Migrate(ctx, db)
}
