package pgcluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestFindBinDir(t *testing.T) {
	t.Run("system binaries are found", func(t *testing.T) {
		d, err := FindBinDir("")
		if err != nil {
			t.Fatalf("FindBinDir: %v (make deps installs postgresql)", err)
		}
		for _, b := range []string{"initdb", "postgres"} {
			if _, err := os.Stat(filepath.Join(d, b)); err != nil {
				t.Errorf("%s missing in %s", b, d)
			}
		}
	})
	t.Run("an override without binaries is ErrNoBinaries", func(t *testing.T) {
		_, err := FindBinDir(t.TempDir())
		if !errors.Is(err, ErrNoBinaries) {
			t.Fatalf("err = %v, want ErrNoBinaries", err)
		}
		if !strings.Contains(err.Error(), "apt-get install postgresql") {
			t.Errorf("error does not name the package: %v", err)
		}
	})
}

func TestResolveDir(t *testing.T) {
	id, err := identity()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("a reachable dir is used as is", func(t *testing.T) {
		base := openTempDir(t)
		want := filepath.Join(base, "pg")
		got, fellBack, err := ResolveDir(want)
		if err != nil {
			t.Fatal(err)
		}
		if got != want || fellBack {
			t.Fatalf("ResolveDir = %s (fell back %v), want %s", got, fellBack, want)
		}
	})
	t.Run("an unreachable dir falls back to a postgres-owned temp dir", func(t *testing.T) {
		base := openTempDir(t)
		if err := os.Chmod(base, 0o700); err != nil {
			t.Fatal(err)
		}
		want := filepath.Join(base, "pg")
		got, fellBack, err := ResolveDir(want)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if got != want {
				os.RemoveAll(got)
			}
		})
		if id.cred == nil {
			// Not root: the cluster runs as us and can reach our own 0700 dir.
			if got != want || fellBack {
				t.Fatalf("as non-root ResolveDir = %s (fell back %v), want %s", got, fellBack, want)
			}
			return
		}
		if !fellBack || got == want || !strings.HasPrefix(got, os.TempDir()) {
			t.Fatalf("ResolveDir = %s (fell back %v); want a fallback under %s", got, fellBack, os.TempDir())
		}
		again, _, err := ResolveDir(want)
		if err != nil || again != got {
			t.Fatalf("fallback not stable: %s then %s (%v)", got, again, err)
		}
		fi, err := os.Stat(got)
		if err != nil {
			t.Fatal(err)
		}
		if !id.reachable(got) {
			t.Fatalf("fallback %s (mode %v) not reachable by postgres", got, fi.Mode())
		}
	})
	t.Run("a path too long for a unix socket falls back", func(t *testing.T) {
		base := openTempDir(t)
		want := filepath.Join(base, strings.Repeat("d", 100))
		got, fellBack, err := ResolveDir(want)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(got) })
		if !fellBack || len(got) > 90 {
			t.Fatalf("ResolveDir = %s (fell back %v)", got, fellBack)
		}
	})
}

func TestStartStop(t *testing.T) {
	base := openTempDir(t)
	ctx := context.Background()
	c, err := Start(ctx, Options{Dir: filepath.Join(base, "pg"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		c.Stop()
		t.Fatal(err)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("SELECT 1 = %d, %v", one, err)
	}
	var listen string
	if err := conn.QueryRow(ctx, "SHOW listen_addresses").Scan(&listen); err != nil || listen != "" {
		t.Errorf("listen_addresses = %q (%v); want no TCP", listen, err)
	}
	conn.Close(ctx)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("server still running after Stop")
	}
	if _, err := os.Stat(filepath.Join(base, "pg", "data", "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("postmaster.pid left after a clean stop: %v", err)
	}
}

// openTempDir is a t.TempDir that the postgres user can traverse (t.TempDir
// and its parent are 0700).
func openTempDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{d, filepath.Dir(d)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}
