// Package migrations holds Aerie's numbered SQL migrations, embedded in the
// binary, and runs them with goose (applied at start-up and by `aerie migrate`).
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed *.sql
var files embed.FS

// ErrSchemaNewer is returned when the database has migrations this binary
// does not know: it was migrated by a newer Aerie.
var ErrSchemaNewer = errors.New("database schema is newer than this binary")

// Runner applies and reports migrations on one database.
type Runner struct {
	db       *sql.DB
	provider *goose.Provider
}

// New returns a Runner over pool. Close releases its connection handle, not
// the pool.
func New(pool *pgxpool.Pool, log *slog.Logger) (*Runner, error) {
	db := stdlib.OpenDBFromPool(pool)
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("migration locker: %w", err)
	}
	opts := []goose.ProviderOption{goose.WithSessionLocker(locker)}
	if log != nil {
		opts = append(opts, goose.WithSlog(log))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, files, opts...)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return &Runner{db: db, provider: p}, nil
}

// Close releases the runner.
func (r *Runner) Close() error { return r.db.Close() }

// Latest is the newest migration version embedded in the binary.
func (r *Runner) Latest() int64 {
	src := r.provider.ListSources()
	if len(src) == 0 {
		return 0
	}
	return src[len(src)-1].Version
}

// Versions reports the database's current version and the binary's latest.
func (r *Runner) Versions(ctx context.Context) (current, latest int64, err error) {
	current, err = r.provider.GetDBVersion(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("read schema version: %w", err)
	}
	return current, r.Latest(), nil
}

// Check returns ErrSchemaNewer when the database is ahead of the binary.
func (r *Runner) Check(ctx context.Context) error {
	cur, latest, err := r.Versions(ctx)
	if err != nil {
		return err
	}
	if cur > latest {
		return fmt.Errorf("%w: database is at version %d, this binary knows up to %d; upgrade aerie", ErrSchemaNewer, cur, latest)
	}
	return nil
}

// Up applies every pending migration, refusing a database that is newer
// than the binary. It returns how many were applied.
func (r *Runner) Up(ctx context.Context) (int, error) {
	if err := r.Check(ctx); err != nil {
		return 0, err
	}
	res, err := r.provider.Up(ctx)
	if err != nil {
		return 0, fmt.Errorf("apply migrations: %w", err)
	}
	return len(res), nil
}

// Current reports whether the database has every migration applied.
func (r *Runner) Current(ctx context.Context) (bool, error) {
	cur, latest, err := r.Versions(ctx)
	if err != nil {
		return false, err
	}
	return cur == latest, nil
}

// Status describes one migration.
type Status struct {
	Version int64
	Name    string
	Applied bool
}

// Status lists every migration the binary knows and whether it is applied.
func (r *Runner) Status(ctx context.Context) ([]Status, error) {
	st, err := r.provider.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	out := make([]Status, 0, len(st))
	for _, s := range st {
		out = append(out, Status{Version: s.Source.Version, Name: s.Source.Path, Applied: s.State == goose.StateApplied})
	}
	return out, nil
}
