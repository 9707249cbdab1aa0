package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aeriemq/aerie/api"
	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/internal/mailer"
	"github.com/aeriemq/aerie/internal/secretbox"
	"github.com/aeriemq/aerie/migrations"
	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

// controlPlane is the control plane's half of a process: Postgres, the
// services over it, and the node link's control-plane end.
type controlPlane struct {
	pool       *pgxpool.Pool
	svc        *tenancy.Service
	billing    *billing.Service
	meter      *billing.Meter
	feed       *nodelink.Feed
	hub        *nodelink.Hub
	adminToken string
	// nodeAPI reaches the node serving an instance: in process in `aerie
	// serve`, over HTTP from `aerie controlplane`.
	nodeAPI nodelink.Caller
}

// openControlPlane opens the database (migrated), the services and the
// node link, and starts their background loops (until ctx ends).
func openControlPlane(ctx context.Context, s *server) (*controlPlane, error) {
	pool, err := openMigrated(ctx, s)
	if err != nil {
		return nil, err
	}
	cp := &controlPlane{pool: pool}
	keys, err := secretKeys(s.cfg, s.sub, s.log)
	if err != nil {
		return nil, err
	}
	down, err := nodeDownAfter(s.cfg)
	if err != nil {
		return nil, err
	}
	cp.svc, cp.billing = newDomain(pool, s.log, tenancy.WithMailer(mailer.FromEnv(os.Getenv, s.log)), tenancy.WithBaseURL(s.public.String()),
		tenancy.WithSecretKeys(keys), tenancy.WithNodeLiveWindow(down))
	// Seal what an older binary stored in plain and what an older key
	// sealed: this completes a key rotation.
	if n, err := cp.svc.SealSecrets(ctx); err != nil {
		return nil, err
	} else if n > 0 {
		s.log.Info("sealed secrets with the current key-encryption key", "count", n)
	}
	cp.meter = billing.NewMeter(pool, cp.svc, s.log)
	cp.feed = nodelink.NewFeed(cp.svc, s.log.With("component", "configfeed"))
	cp.hub = api.NewHub(api.Deps{Log: s.log, Tenancy: cp.svc, Feed: cp.feed, Meter: cp.meter})
	go cp.feed.Run(ctx)
	// Spend limits and capped allowances (Free): checked every 2 s, so a
	// limit applies within moments of the usage report that shows it.
	go cp.billing.RunLimits(ctx, cp.svc, 2*time.Second)
	// Month-end invoices (idempotent across control-plane replicas) and
	// overdue marking; payments are the built-in manual method.
	go cp.billing.RunPeriodClose(ctx, billing.Manual{}, time.Minute)
	if cp.adminToken, err = adminToken(s.cfg, s.sub, s.log); err != nil {
		return nil, err
	}
	s.procMetrics.MustRegister(newControlPlaneCollector(cp.svc))
	if s.node != nil {
		cp.nodeAPI = s.node.local
	} else {
		svc := cp.svc
		cp.nodeAPI = &nodelink.HTTP{Resolve: svc.NodeAPITarget}
	}
	return cp, nil
}

// openMigrated opens the database (the private cluster when no
// DATABASE_URL is set), brings its schema up to date and adds the
// database's readiness checks.
func openMigrated(ctx context.Context, s *server) (*pgxpool.Pool, error) {
	pool, stopDB, err := openDatabase(ctx, s.cfg, s.log)
	if err != nil {
		return nil, err
	}
	s.onClose(stopDB)
	runner, err := migrations.New(pool, s.log)
	if err != nil {
		return nil, err
	}
	s.onClose(func() { runner.Close() })
	n, err := runner.Up(ctx)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		s.log.Info("applied database migrations", "count", n)
	}
	s.checks = append(s.checks,
		api.ReadyCheck{Name: "postgres", Fn: func(ctx context.Context) error { return pool.Ping(ctx) }},
		api.ReadyCheck{Name: "migrations", Fn: func(ctx context.Context) error {
			cur, latest, err := runner.Versions(ctx)
			if err != nil {
				return err
			}
			if cur != latest {
				return fmt.Errorf("schema at version %d, binary expects %d", cur, latest)
			}
			return nil
		}},
	)
	return pool, nil
}

// fill sets the API's dependencies on the control plane.
func (cp *controlPlane) fill(d *api.Deps) {
	d.DB, d.Tenancy, d.Billing, d.Meter, d.Feed, d.AdminToken = cp.pool, cp.svc, cp.billing, cp.meter, cp.feed, cp.adminToken
	d.NodeAPI = cp.nodeAPI
	d.Nodes = api.NewNodeInspector(cp.nodeAPI, cp.svc)
}

// planApplier pushes a plan's quotas to an org's instances.
type planApplier struct{ svc *tenancy.Service }

// ApplyPlan implements billing.PlanApplier.
func (p planApplier) ApplyPlan(ctx context.Context, orgID string, plan billing.Plan) error {
	return p.svc.ApplyPlanQuotas(ctx, orgID, plan.ID, tenancy.Quotas(plan.Quotas))
}

// adminToken returns the operator token: the configured one, or for serve
// one generated once into <data-dir>/admin-token.
func adminToken(cfg *config, sub string, log *slog.Logger) (string, error) {
	if cfg.AdminToken != "" || sub != "serve" {
		return cfg.AdminToken, nil
	}
	p := filepath.Join(cfg.DataDir, "admin-token")
	b, err := os.ReadFile(p)
	if err == nil && len(strings.TrimSpace(string(b))) >= 20 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("admin token: %w", err)
	}
	tok := "aea_" + randomHex(24)
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	log.Info("generated the operator token for /v1/admin", "file", p)
	return tok, nil
}

// secretKeys loads the key-encryption keys: AERIE_SECRET_KEY (lines or
// commas), else --secret-key-file, else <data-dir>/secret-key, generated
// (0600) when missing. Every control-plane process of one database must
// share them.
func secretKeys(cfg *config, sub string, log *slog.Logger) (*secretbox.Keyring, error) {
	if v := os.Getenv("AERIE_SECRET_KEY"); v != "" {
		kr, err := secretbox.Parse(strings.ReplaceAll(v, ",", "\n"))
		if err != nil {
			return nil, fmt.Errorf("AERIE_SECRET_KEY: %w", err)
		}
		return kr, nil
	}
	p := cfg.SecretKeyFile
	if p == "" {
		p = filepath.Join(cfg.DataDir, "secret-key")
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(p, []byte(secretbox.NewKey()+"\n"), 0o600); err != nil {
				return nil, fmt.Errorf("secret key: %w", err)
			}
			log.Info("generated the key-encryption key that seals private keys in the database; back it up", "file", p)
			if sub == "controlplane" {
				log.Warn("every control-plane process of this database needs the same key: copy it or set --secret-key-file", "file", p)
			}
		}
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	kr, err := secretbox.Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("secret key file %s: %w", p, err)
	}
	return kr, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
