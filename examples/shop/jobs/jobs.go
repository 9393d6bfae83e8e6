// Package jobs is a job queue: jobs are rows in PostgreSQL, their IDs are
// handed to workers through a Redis list.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Schema creates the jobs table.
const Schema = `CREATE TABLE IF NOT EXISTS jobs (
	id      bigserial PRIMARY KEY,
	kind    text NOT NULL,
	payload text NOT NULL,
	state   text NOT NULL DEFAULT 'queued',
	result  text
)`

// ErrEmpty: no job arrived in time.
var ErrEmpty = errors.New("no job")

// Queue hands out jobs.
type Queue struct {
	db   *pgxpool.Pool
	rdb  *redis.Client
	list string
}

// New returns a queue whose Redis list is named list.
func New(db *pgxpool.Pool, rdb *redis.Client, list string) *Queue {
	return &Queue{db: db, rdb: rdb, list: list}
}

// Enqueue stores a job and signals it to workers.
func (q *Queue) Enqueue(ctx context.Context, kind, payload string) (int64, error) {
	var id int64
	if err := q.db.QueryRow(ctx, `INSERT INTO jobs (kind, payload) VALUES ($1, $2) RETURNING id`, kind, payload).Scan(&id); err != nil {
		return 0, fmt.Errorf("enqueue %s: %w", kind, err)
	}
	if err := q.rdb.LPush(ctx, q.list, id).Err(); err != nil {
		return 0, fmt.Errorf("enqueue %s: signal: %w", kind, err)
	}
	return id, nil
}

// Work takes the next job (waiting up to wait), runs fn on it and records
// the result.
func (q *Queue) Work(ctx context.Context, wait time.Duration, fn func(kind, payload string) (string, error)) (int64, error) {
	res, err := q.rdb.BRPop(ctx, wait, q.list).Result()
	if errors.Is(err, redis.Nil) {
		return 0, ErrEmpty
	}
	if err != nil {
		return 0, err
	}
	id, err := strconv.ParseInt(res[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("work: bad job id %q", res[1])
	}
	var kind, payload string
	err = q.db.QueryRow(ctx, `UPDATE jobs SET state = 'running' WHERE id = $1 AND state = 'queued' RETURNING kind, payload`, id).Scan(&kind, &payload)
	if errors.Is(err, pgx.ErrNoRows) {
		return id, fmt.Errorf("work: job %d is not queued", id)
	}
	if err != nil {
		return id, err
	}
	out, ferr := fn(kind, payload)
	state := "done"
	if ferr != nil {
		state, out = "failed", ferr.Error()
	}
	_, err = q.db.Exec(ctx, `UPDATE jobs SET state = $2, result = $3 WHERE id = $1`, id, state, out)
	return id, err
}

// State returns a job's state and result.
func (q *Queue) State(ctx context.Context, id int64) (state, result string, err error) {
	var r *string
	err = q.db.QueryRow(ctx, `SELECT state, result FROM jobs WHERE id = $1`, id).Scan(&state, &r)
	if r != nil {
		result = *r
	}
	return state, result, err
}
