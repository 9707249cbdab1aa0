package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aeriemq/aerie/internal/pgcluster"
	"github.com/aeriemq/aerie/migrations"
)

// prepareDataDir creates the data dir and proves it is writable.
func prepareDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("data dir %s is not usable: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".write-test-*")
	if err != nil {
		return fmt.Errorf("data dir %s is not writable: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// lockDataDir takes an exclusive lock on the data dir so two processes never
// share one cluster or node state. The kernel drops it if we die.
func lockDataDir(dir string) (func(), error) {
	p := filepath.Join(dir, "aerie.lock")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data dir lock %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data dir %s is in use by another aerie process", dir)
	}
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "%d\n", os.Getpid())
	return func() { f.Close() }, nil
}

// openDatabase connects to DATABASE_URL, or starts the private cluster under
// <data-dir>/pg and creates the aerie database in it.
func openDatabase(ctx context.Context, cfg *config, log *slog.Logger) (*pgxpool.Pool, func(), error) {
	dsn := cfg.DatabaseURL
	stop := func() {}
	if dsn == "" {
		cl, err := pgcluster.Start(ctx, pgcluster.Options{Dir: filepath.Join(cfg.DataDir, "pg"), BinDir: cfg.PGBinDir, Log: log})
		if err != nil {
			return nil, nil, fmt.Errorf("private postgres: %w", err)
		}
		stop = func() { _ = cl.Stop() }
		if err := ensureDatabase(ctx, cl.DSN("postgres"), "aerie"); err != nil {
			stop()
			return nil, nil, err
		}
		dsn = cl.DSN("aerie")
	}
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("connect to postgres: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		stop()
		return nil, nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return pool, func() { pool.Close(); stop() }, nil
}

func ensureDatabase(ctx context.Context, adminDSN, name string) error {
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return fmt.Errorf("connect to private postgres: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// runMigrate implements `aerie migrate up|status`.
func runMigrate(ctx context.Context, args []string, stdout io.Writer, stderr *os.File) error {
	if len(args) == 0 || (args[0] != "up" && args[0] != "status") {
		return fmt.Errorf("%w: aerie migrate up|status", errUsage)
	}
	action := args[0]
	cfg, _, err := parseConfig("migrate", args[1:], stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	if cfg.DatabaseURL == "" {
		if err := prepareDataDir(cfg.DataDir); err != nil {
			return err
		}
		unlock, err := lockDataDir(cfg.DataDir)
		if err != nil {
			return err
		}
		defer unlock()
	}
	pool, stop, err := openDatabase(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stop()
	r, err := migrations.New(pool, nil)
	if err != nil {
		return err
	}
	defer r.Close()
	if action == "up" {
		n, err := r.Up(ctx)
		if err != nil {
			return err
		}
		cur, _, err := r.Versions(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "applied %d migration(s); schema at version %d\n", n, cur)
		return nil
	}
	st, err := r.Status(ctx)
	if err != nil {
		return err
	}
	for _, s := range st {
		state := "pending"
		if s.Applied {
			state = "applied"
		}
		fmt.Fprintf(stdout, "%05d  %-8s %s\n", s.Version, state, s.Name)
	}
	return r.Check(ctx)
}
