package main_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aeriemq/aerie/internal/pgcluster"
)

// TestPostgresOutage: aerie serve on a Postgres cluster of its own that the
// test stops and starts. While Postgres is down the API answers 503
// service-degraded with Retry-After (never 500) and /readyz says why; two
// seconds after Postgres answers again, the first requests succeed without a
// restart: a read, an HTTP publish through the node and a credential.
func TestPostgresOutage(t *testing.T) {
	base := newDataDir(t)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts := pgcluster.Options{Dir: filepath.Join(filepath.Dir(base), "outage-pg"), NoSync: true, Log: log, BinDir: os.Getenv("AERIE_PG_BINDIR")}
	cl, err := pgcluster.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Stop() })
	conn, err := pgx.Connect(ctx, cl.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE aerie"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	pp := freePorts(t)
	p := start(t, cleanEnv("DATABASE_URL="+cl.DSN("aerie")), append([]string{"serve", "--data-dir", base}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	baseURL := "http://" + pp.http
	c, org := signup(t, baseURL, "outage@example.com")
	var inst instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "plant"}, 201, &inst)
	waitRunning(t, c, org, inst.ID)
	var key struct{ Secret string }
	c.call(t, "POST", "/v1/orgs/"+org+"/api-keys", map[string]any{"name": "backend", "scopes": []string{"write"}}, 201, &key)
	pubPath := "/v1/orgs/" + org + "/instances/" + inst.ID + "/publish"
	credPath := "/v1/orgs/" + org + "/instances/" + inst.ID + "/credentials"
	if r := rawCall(t, baseURL, key.Secret, "POST", pubPath, map[string]any{"topic": "a/b", "payload": "before"}); r.status != 200 {
		t.Fatalf("publish before the outage: %d %s", r.status, r.body)
	}

	if err := cl.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Run("Postgres down: 503 service-degraded with Retry-After", func(t *testing.T) {
		for _, q := range []struct{ method, path, token string }{
			{"GET", "/v1/orgs/" + org, key.Secret},
			{"GET", "/v1/me", c.token},
			{"POST", pubPath, key.Secret},
			{"POST", credPath, key.Secret},
		} {
			var body any
			if q.method == "POST" {
				body = map[string]any{"topic": "a/b", "payload": "during"}
				if q.path == credPath {
					body = map[string]any{"username": "during"}
				}
			}
			r := rawCall(t, baseURL, q.token, q.method, q.path, body)
			if r.status != http.StatusServiceUnavailable || r.problemType() != "service-degraded" {
				t.Errorf("%s %s: %d %s, want 503 service-degraded", q.method, q.path, r.status, r.body)
				continue
			}
			if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
				t.Errorf("%s %s: Retry-After %q", q.method, q.path, r.header.Get("Retry-After"))
			}
			if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("%s %s: content type %q", q.method, q.path, ct)
			}
		}
		res, err := http.Get(baseURL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		var ready struct {
			Status string
			Failed []struct{ Check, Reason string }
		}
		_ = json.NewDecoder(res.Body).Decode(&ready)
		res.Body.Close()
		if res.StatusCode != 503 || len(ready.Failed) == 0 || ready.Failed[0].Check != "postgres" || ready.Failed[0].Reason == "" {
			t.Errorf("/readyz while Postgres is down: %d %+v", res.StatusCode, ready)
		}
	})
	// Stay down long enough for retry loops to back off past their first
	// steps (the config feed's used to reach 6.4 s, then 10 s).
	time.Sleep(9 * time.Second)

	if cl, err = pgcluster.Start(ctx, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Stop() })
	up := time.Now()
	time.Sleep(2 * time.Second)
	t.Run("2 s after Postgres is back the first requests succeed", func(t *testing.T) {
		if r := rawCall(t, baseURL, key.Secret, "GET", "/v1/orgs/"+org, nil); r.status != 200 {
			t.Errorf("GET org %s after Postgres returned: %d %s", time.Since(up), r.status, r.body)
		}
		if r := rawCall(t, baseURL, key.Secret, "POST", credPath, map[string]any{"username": "after"}); r.status != 201 {
			t.Errorf("create credential %s after Postgres returned: %d %s", time.Since(up), r.status, r.body)
		}
		if r := rawCall(t, baseURL, key.Secret, "POST", pubPath, map[string]any{"topic": "a/b", "payload": "after"}); r.status != 200 {
			t.Errorf("HTTP publish %s after Postgres returned: %d %s", time.Since(up), r.status, r.body)
		}
		if res, err := http.Get(baseURL + "/readyz"); err != nil || res.StatusCode != 200 {
			t.Errorf("/readyz after Postgres returned: %v %v", res, err)
		}
	})
}
