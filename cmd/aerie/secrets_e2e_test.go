package main_test

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"

	"github.com/aeriemq/aerie/internal/pgcluster"
	"github.com/aeriemq/aerie/internal/pgtest"
	"github.com/aeriemq/aerie/internal/secretbox"
)

// openTokenKey opens a sealed signing key with the key file of dataDir.
func openTokenKey(t *testing.T, dataDir, instanceID, kid string, sealed []byte) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "secret-key"))
	if err != nil {
		t.Fatal(err)
	}
	kr, err := secretbox.Parse(string(b))
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kr.Open(sealed, []byte("instance_token_keys:"+instanceID+":"+kid))
	if err != nil {
		t.Fatalf("open the signing key: %v", err)
	}
	return seed
}

// TestSecretsAtRest: device-token signing keys are sealed with the
// key-encryption key generated into the data dir: a pg_dump holds no
// private key; after a restart, and after a key rotation (a new key first in
// --secret-key-file, the old one after it; then the new one alone), tokens
// are still issued and verify with the instance's public key.
func TestSecretsAtRest(t *testing.T) {
	dsn := pgtest.EmptyDSN(t)
	dataDir := newDataDir(t)
	pp := freePorts(t)
	run := func(t *testing.T, extra ...string) *proc {
		t.Helper()
		p := start(t, cleanEnv("DATABASE_URL="+dsn), append(append([]string{"serve", "--data-dir", dataDir}, pp.args()...), extra...)...)
		waitReady(t, p, pp.http, 60*time.Second)
		return p
	}
	stop := func(t *testing.T, p *proc) {
		t.Helper()
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("exit code %d", code)
		}
	}
	p := run(t)
	base := "http://" + pp.http
	if fi, err := os.Stat(filepath.Join(dataDir, "secret-key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated key file: %v %v", fi, err)
	}
	c, org := signup(t, base, "sealed@example.com")
	var inst instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "vault"}, 201, &inst)
	waitRunning(t, c, org, inst.ID)
	issue := func(t *testing.T) {
		t.Helper()
		var out struct{ Token string }
		c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/tokens",
			map[string]any{"resources": []any{map[string]any{"filter": "#", "actions": []string{"publish"}}}, "ttl_seconds": 600}, 201, &out)
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var pub []byte
		if err := conn.QueryRow(ctx, `SELECT public_key FROM instance_token_keys WHERE instance_id = $1`, inst.ID).Scan(&pub); err != nil {
			t.Fatal(err)
		}
		if _, err := jwt.Parse(out.Token, func(*jwt.Token) (any, error) { return ed25519.PublicKey(pub), nil },
			jwt.WithValidMethods([]string{"EdDSA"})); err != nil {
			t.Fatalf("issued token does not verify: %v", err)
		}
	}
	issue(t)
	stored := func(t *testing.T) (string, []byte) {
		t.Helper()
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var kid string
		var v []byte
		if err := conn.QueryRow(ctx, `SELECT kid, private_key FROM instance_token_keys WHERE instance_id = $1`, inst.ID).Scan(&kid, &v); err != nil {
			t.Fatal(err)
		}
		return kid, v
	}
	kid, sealed := stored(t)
	seed := openTokenKey(t, dataDir, inst.ID, kid, sealed)

	t.Run("pg_dump holds no private key", func(t *testing.T) {
		bin, err := pgcluster.FindBinDir(os.Getenv("AERIE_PG_BINDIR"))
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(filepath.Join(bin, "pg_dump"), "--data-only", "--table=instance_token_keys", "--dbname="+dsn).CombinedOutput()
		if err != nil {
			t.Fatalf("pg_dump: %v: %s", err, out)
		}
		dump := string(out)
		if !strings.Contains(dump, inst.ID) {
			t.Fatalf("the dump lacks the instance's key row:\n%s", dump)
		}
		if strings.Contains(dump, hex.EncodeToString(seed)) || strings.Contains(dump, hex.EncodeToString(ed25519.NewKeyFromSeed(seed))) {
			t.Fatal("the dump holds the private key")
		}
	})

	stop(t, p)
	t.Run("after a restart tokens are still issued", func(t *testing.T) {
		p = run(t)
		issue(t)
		stop(t, p)
	})

	old, err := os.ReadFile(filepath.Join(dataDir, "secret-key"))
	if err != nil {
		t.Fatal(err)
	}
	fresh := secretbox.NewKey()
	rotated := filepath.Join(filepath.Dir(dataDir), "rotated-keys")
	if err := os.WriteFile(rotated, []byte(fresh+"\n"+string(old)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("after a key rotation", func(t *testing.T) {
		p = run(t, "--secret-key-file", rotated)
		if !strings.Contains(p.stderr.String(), "sealed secrets with the current key-encryption key") {
			t.Error("the restart did not reseal under the new key")
		}
		issue(t)
		stop(t, p)
		newOnly, _ := secretbox.Parse(fresh)
		kid, v := stored(t)
		if _, err := newOnly.Open(v, []byte("instance_token_keys:"+inst.ID+":"+kid)); err != nil {
			t.Fatalf("the key is not sealed under the new KEK: %v", err)
		}
		if err := os.WriteFile(rotated, []byte(fresh+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		p = run(t, "--secret-key-file", rotated) // the old key retired
		issue(t)
	})
}
