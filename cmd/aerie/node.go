package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/forward"
	"github.com/aeriemq/aerie/dataplane/gateway"
	"github.com/aeriemq/aerie/dataplane/usagereport"
	"github.com/aeriemq/aerie/internal/secretbox"
	"github.com/aeriemq/aerie/migrations"
	"github.com/aeriemq/aerie/tenancy"
)

// runNode implements `aerie node create NAME` and `aerie node list`.
func runNode(ctx context.Context, args []string, stdout io.Writer, stderr *os.File) error {
	if len(args) == 0 || (args[0] != "create" && args[0] != "list") {
		return fmt.Errorf("%w: aerie node create NAME | aerie node list", errUsage)
	}
	action := args[0]
	cfg, rest, err := parseConfig("node", args[1:], stderr)
	if err != nil {
		return err
	}
	if action == "create" && len(rest) != 1 {
		return fmt.Errorf("%w: aerie node create NAME", errUsage)
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
	if _, err := r.Up(ctx); err != nil {
		return err
	}
	svc := tenancy.NewService(pool, log)
	if action == "create" {
		n, tok, err := svc.CreateNode(ctx, rest[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "node %s (%s) registered. Its token, shown once:\n  AERIE_NODE_TOKEN=%s\nStart it with:\n  aerie dataplane --control-plane URL --node-token %s\n", n.Name, n.ID, tok, tok)
		return nil
	}
	ns, err := svc.ListNodes(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%-14s %-20s %9s %11s %10s  %s\n", "ID", "NAME", "INSTANCES", "CONNECTIONS", "REVISION", "LAST SEEN")
	for _, n := range ns {
		seen := "never"
		if n.LastSeenAt != nil {
			seen = n.LastSeenAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(stdout, "%-14s %-20s %9d %11d %10d  %s\n", n.ID, n.Name, n.Instances, n.Connections, n.AppliedRevision, seen)
	}
	return nil
}

// nodeIDFromToken extracts the node ID from aen_<id>_<secret>.
func nodeIDFromToken(tok string) (string, error) {
	rest, ok := strings.CutPrefix(tok, "aen_")
	i := strings.LastIndexByte(rest, '_')
	if !ok || i <= 0 {
		return "", fmt.Errorf("%w: --node-token is not a node token (aen_<node>_<secret>); create one with 'aerie node create NAME'", errUsage)
	}
	return rest[:i], nil
}

// endpoints are the MQTT URLs devices use to reach this node.
func endpoints(cfg *config, gw *gateway.Gateway) map[string]string {
	out := map[string]string{}
	host := cfg.PublicHost
	if host == "" {
		host = "localhost"
	}
	port := func(addr, public string) string {
		if public != "" {
			return public
		}
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			return ""
		}
		return p
	}
	if p := port(gw.MQTTAddr(), cfg.PublicMQTTPort); p != "" {
		out["mqtt"] = "mqtt://" + net.JoinHostPort(host, p)
	}
	if p := port(gw.WSAddr(), cfg.PublicWSPort); p != "" {
		out["ws"] = "ws://" + net.JoinHostPort(host, p) + "/mqtt"
	}
	if p := port(gw.TLSAddr(), ""); p != "" {
		out["mqtts"] = "mqtts://" + net.JoinHostPort(host, p)
	}
	if p := port(gw.WSSAddr(), ""); p != "" {
		out["wss"] = "wss://" + net.JoinHostPort(host, p) + "/mqtt"
	}
	return out
}

// dataPlane is a running node's config follower and usage reporter.
type dataPlane struct {
	client   *configsync.Client
	reporter *usagereport.Reporter
}

// startDataPlane loads the node's disk snapshot, then follows src and
// reports usage to the control plane at cpURL with token.
func startDataPlane(ctx context.Context, cfg *config, log *slog.Logger, gw *gateway.Gateway, state *configsync.State,
	src configsync.Source, nodeID, cpURL, token string, fwd *forward.Service) (*dataPlane, error) {
	client, err := configsync.NewClient(configsync.Options{Source: src, State: state, Dir: filepath.Join(cfg.DataDir, "config"),
		Log: log.With("component", "configsync"), Endpoints: endpoints(cfg, gw), APIURL: cfg.NodeAPIURL, Connections: gw.Connections, Publisher: gw.Publish})
	if err != nil {
		return nil, err
	}
	if err := client.Load(ctx); err != nil {
		log.Warn("no usable config snapshot on disk; waiting for the control plane", "error", err)
	} else if state.Revision() > 0 {
		log.Info("serving from the config snapshot on disk", "revision", state.Revision(), "credentials", state.Credentials())
	}
	go client.Run(ctx)
	go fwd.Run(ctx) // after the disk snapshot: rules resume from their cursors
	dp := &dataPlane{client: client}
	if cpURL != "" {
		rep, err := usagereport.New(usagereport.Options{NodeID: nodeID, ControlPlane: cpURL, Token: token,
			Dir: filepath.Join(cfg.DataDir, "usage"), Interval: 10 * time.Second, Log: log.With("component", "usage")}, usagereport.Merge{gw.Metrics(), fwd})
		if err != nil {
			return nil, err
		}
		go rep.Run(ctx)
		dp.reporter = rep
	}
	return dp, nil
}

// loopbackURL is the control plane's URL from inside the process.
func loopbackURL(ln net.Addr) string {
	_, p, _ := net.SplitHostPort(ln.String())
	n, _ := strconv.Atoi(p)
	return (&url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(n))}).String()
}

// planApplier pushes a plan's quotas to an org's instances.
type planApplier struct{ svc *tenancy.Service }

// ApplyPlan implements billing.PlanApplier.
func (p planApplier) ApplyPlan(ctx context.Context, orgID string, plan billing.Plan) error {
	return p.svc.ApplyPlanQuotas(ctx, orgID, plan.ID, plan.Quotas)
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
