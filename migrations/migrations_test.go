package migrations_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aeriemq/aerie/internal/pgtest"
	"github.com/aeriemq/aerie/migrations"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	newRunner := func(t *testing.T, pool *pgxpool.Pool) *migrations.Runner {
		r, err := migrations.New(pool, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}

	t.Run("up applies every migration once", func(t *testing.T) {
		pool, err := pgxpool.New(ctx, pgtest.EmptyDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		r := newRunner(t, pool)
		n, err := r.Up(ctx)
		if err != nil {
			t.Fatal(err)
		}
		all, err := r.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 || n != len(all) {
			t.Fatalf("applied %d of %d migrations", n, len(all))
		}
		if ok, err := r.Current(ctx); err != nil || !ok {
			t.Fatalf("current = %v, %v", ok, err)
		}
		n, err = r.Up(ctx)
		if err != nil || n != 0 {
			t.Fatalf("second up applied %d, err %v", n, err)
		}
		st, err := r.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st {
			if !s.Applied {
				t.Errorf("migration %d %s not applied", s.Version, s.Name)
			}
		}
	})

	t.Run("a newer schema is refused", func(t *testing.T) {
		db := pgtest.New(t)
		r := newRunner(t, db.Pool)
		if _, err := db.Pool.Exec(ctx, "INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, true)", r.Latest()+100); err != nil {
			t.Fatal(err)
		}
		_, err := r.Up(ctx)
		if !errors.Is(err, migrations.ErrSchemaNewer) {
			t.Fatalf("Up on a newer schema: %v, want ErrSchemaNewer", err)
		}
		if err := r.Check(ctx); !errors.Is(err, migrations.ErrSchemaNewer) {
			t.Fatalf("Check: %v", err)
		}
	})

	t.Run("template clones are isolated", func(t *testing.T) {
		a, b := pgtest.New(t), pgtest.New(t)
		if _, err := a.Pool.Exec(ctx, `INSERT INTO settings (key, value) VALUES ('k', '1')`); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := b.Pool.QueryRow(ctx, `SELECT count(*) FROM settings`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("other database sees %d rows (err %v)", n, err)
		}
	})
}
