// Package users stores user accounts in PostgreSQL.
package users

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrEmailTaken: a user with that e-mail address exists.
var ErrEmailTaken = errors.New("email already registered")

// ErrNotFound: no such user.
var ErrNotFound = errors.New("user not found")

// User is an account.
type User struct {
	ID    int64  // the users.id the database assigned
	Email string // e-mail address, lower-cased; unique among users
	Name  string // the name given at signup
}

// Store keeps users in the users table.
type Store struct{ db *pgxpool.Pool }

// Schema creates the store's table.
const Schema = `CREATE TABLE IF NOT EXISTS users (
	id    bigserial PRIMARY KEY,
	email text NOT NULL UNIQUE,
	name  text NOT NULL
)`

// New returns a store on db; Migrate must have run.
func New(db *pgxpool.Pool) *Store { return &Store{db: db} }

// Migrate creates the table if it is missing.
func Migrate(ctx context.Context, db *pgxpool.Pool) error {
	_, err := db.Exec(ctx, Schema)
	return err
}

// Signup registers a user; the e-mail address is case-insensitive.
func (s *Store) Signup(ctx context.Context, email, name string) (User, error) {
	u := User{Email: strings.ToLower(strings.TrimSpace(email)), Name: name}
	if !strings.Contains(u.Email, "@") {
		return User{}, fmt.Errorf("signup: %q is not an e-mail address", email)
	}
	err := s.db.QueryRow(ctx, `INSERT INTO users (email, name) VALUES ($1, $2) RETURNING id`, u.Email, u.Name).Scan(&u.ID)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return User{}, fmt.Errorf("signup %s: %w", u.Email, ErrEmailTaken)
	}
	if err != nil {
		return User{}, fmt.Errorf("signup %s: %w", u.Email, err)
	}
	return u, nil
}

// ByEmail finds a user.
func (s *Store) ByEmail(ctx context.Context, email string) (User, error) {
	var u User
	err := s.db.QueryRow(ctx, `SELECT id, email, name FROM users WHERE email = $1`, strings.ToLower(email)).Scan(&u.ID, &u.Email, &u.Name)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, ErrNotFound
	}
	return u, err
}
