package isolation

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Migrator brings an empty database (or schema) to the state tests expect.
type Migrator interface {
	// Hash identifies the migration set: templates are rebuilt when it
	// changes. It must change whenever what Migrate does changes.
	Hash() (string, error)
	// Migrate applies the migrations through db. For a schema per test, db's
	// search_path is the test's schema, so unqualified names land there.
	Migrate(ctx context.Context, db *sql.DB) error
}

// NoMigrations leaves the database empty.
var NoMigrations Migrator = funcMigrator{version: "none", fn: func(context.Context, *sql.DB) error { return nil }}

// MigrateFunc adapts a plain function. version stands in for its hash:
// change it whenever fn changes (e.g. "2026-11-27.1", or your migration
// tool's latest version).
func MigrateFunc(version string, fn func(ctx context.Context, db *sql.DB) error) Migrator {
	return funcMigrator{version: version, fn: fn}
}

type funcMigrator struct {
	version string
	fn      func(context.Context, *sql.DB) error
}

// Hash derives the hash from the version given to MigrateFunc; an empty
// version is an error.
func (m funcMigrator) Hash() (string, error) {
	if m.version == "" {
		return "", errors.New("isolation.MigrateFunc: give a version, it keys the template")
	}
	sum := sha256.Sum256([]byte("func:" + m.version))
	return hex.EncodeToString(sum[:]), nil
}

// Migrate calls the function given to MigrateFunc.
func (m funcMigrator) Migrate(ctx context.Context, db *sql.DB) error { return m.fn(ctx, db) }

// SQLDir applies the .sql files of dir in fsys (an embed.FS, os.DirFS …) in
// lexical order of their names (0001_users.sql, 0002_orders.sql, …), each
// in one transaction. Its hash covers every file's name and content.
func SQLDir(fsys fs.FS, dir string) Migrator { return sqlDir{fsys: fsys, dir: dir} }

type sqlDir struct {
	fsys fs.FS
	dir  string
}

func (m sqlDir) files() ([]string, error) {
	entries, err := fs.ReadDir(m.fsys, m.dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations %s: %w", m.dir, err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".sql") {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("read migrations %s: no .sql files", m.dir)
	}
	sort.Strings(names)
	return names, nil
}

// Hash is a SHA-256 over the name, length and content of every .sql file,
// in order; a directory without .sql files is an error.
func (m sqlDir) Hash() (string, error) {
	names, err := m.files()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, n := range names {
		b, err := fs.ReadFile(m.fsys, path.Join(m.dir, n))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Migrate runs the .sql files in order, each in a transaction of its own,
// and stops at the first that fails.
func (m sqlDir) Migrate(ctx context.Context, db *sql.DB) error {
	names, err := m.files()
	if err != nil {
		return err
	}
	for _, n := range names {
		b, err := fs.ReadFile(m.fsys, path.Join(m.dir, n))
		if err != nil {
			return err
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, string(b)); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migration %s: %w", n, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %s: %w", n, err)
		}
	}
	return nil
}
