// Package pgtest gives tests a fresh, migrated Postgres database each.
//
// One private cluster is started per test process from the system's
// PostgreSQL binaries (or DATABASE_URL's server is used), a template database
// is migrated once, and every test gets its own database cloned from it with
// CREATE DATABASE … TEMPLATE, dropped when the test ends. Tests may run in
// parallel. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aeriemq/aerie/internal/pgcluster"
	"github.com/aeriemq/aerie/migrations"
)

type server struct {
	adminDSN string // a DSN for the maintenance database
	dsnFor   func(db string) string
	template string
	cluster  *pgcluster.Cluster
	tmpDir   string
}

var (
	mu     sync.Mutex
	srv    *server
	srvErr error
)

// Main runs the tests and then stops the private cluster (if one was
// started). Return its result from TestMain via os.Exit.
func Main(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	if srv != nil {
		srv.close()
	}
	return code
}

func (s *server) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.cluster == nil {
		if conn, err := pgx.Connect(ctx, s.adminDSN); err == nil {
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{s.template}.Sanitize()+" WITH (FORCE)")
			conn.Close(ctx)
		}
		return
	}
	_ = s.cluster.Stop()
	_ = os.RemoveAll(s.tmpDir)
}

func start() (*server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := &server{template: "aerie_tpl_" + randHex(6)}
	if dsn := os.Getenv("DATABASE_URL"); dsn != "" {
		u, err := url.Parse(dsn)
		if err != nil {
			return nil, fmt.Errorf("DATABASE_URL: %w", err)
		}
		s.dsnFor = func(db string) string { c := *u; c.Path = "/" + db; return c.String() }
		s.adminDSN = dsn
	} else {
		dir, err := os.MkdirTemp("", "aerie-pgtest-")
		if err != nil {
			return nil, err
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, err
		}
		s.tmpDir = dir
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		c, err := pgcluster.Start(ctx, pgcluster.Options{Dir: filepath.Join(dir, "pg"), NoSync: true, Log: log, BinDir: os.Getenv("AERIE_PG_BINDIR")})
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		s.cluster = c
		s.dsnFor = c.DSN
		s.adminDSN = c.DSN("postgres")
	}
	admin, err := pgx.Connect(ctx, s.adminDSN)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{s.template}.Sanitize()); err != nil {
		s.close()
		return nil, fmt.Errorf("create template: %w", err)
	}
	pool, err := pgxpool.New(ctx, s.dsnFor(s.template))
	if err != nil {
		s.close()
		return nil, err
	}
	r, err := migrations.New(pool, nil)
	if err == nil {
		_, err = r.Up(ctx)
		r.Close()
	}
	pool.Close()
	if err != nil {
		s.close()
		return nil, fmt.Errorf("migrate template: %w", err)
	}
	return s, nil
}

func get(t testing.TB) *server {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if srv == nil && srvErr == nil {
		srv, srvErr = start()
	}
	if srvErr != nil {
		t.Fatalf("pgtest: %v", srvErr)
	}
	return srv
}

// DB is a fresh migrated database for one test.
type DB struct {
	Name string
	DSN  string
	Pool *pgxpool.Pool
}

// New creates a fresh database cloned from the migrated template, with a
// pool connected to it; both are dropped when the test ends.
func New(t testing.TB) *DB {
	t.Helper()
	s := get(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := "t_" + sanitize(t.Name()) + "_" + randHex(4)
	admin, err := pgx.Connect(ctx, s.adminDSN)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer admin.Close(ctx)
	q := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize() + " TEMPLATE " + pgx.Identifier{s.template}.Sanitize()
	for attempt := 0; ; attempt++ {
		_, err = admin.Exec(ctx, q)
		// Concurrent clones of one template can collide briefly.
		if err == nil || attempt >= 50 || !strings.Contains(err.Error(), "being accessed by other users") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("pgtest: %s: %v", q, err)
	}
	dsn := s.dsnFor(name)
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: pool: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, s.adminDSN)
		if err != nil {
			t.Errorf("pgtest: cleanup connect: %v", err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
		}
	})
	return &DB{Name: name, DSN: dsn, Pool: pool}
}

// EmptyDSN creates an empty, unmigrated database (for migration tests) and
// returns its DSN; it is dropped when the test ends.
func EmptyDSN(t testing.TB) string {
	t.Helper()
	s := get(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := "e_" + sanitize(t.Name()) + "_" + randHex(4)
	admin, err := pgx.Connect(ctx, s.adminDSN)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, s.adminDSN); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			c.Close(ctx)
		}
	})
	return s.dsnFor(name)
}

func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 40 {
			break
		}
	}
	return b.String()
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
