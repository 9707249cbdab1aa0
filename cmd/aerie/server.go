package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/aeriemq/aerie/api"
	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/console"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/consume"
	"github.com/aeriemq/aerie/dataplane/forward"
	"github.com/aeriemq/aerie/dataplane/gateway"
	"github.com/aeriemq/aerie/dataplane/nodeapi"
	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/internal/gctune"
	"github.com/aeriemq/aerie/internal/mailer"
	"github.com/aeriemq/aerie/internal/pgcluster"
	"github.com/aeriemq/aerie/migrations"
	"github.com/aeriemq/aerie/tenancy"
)

// runServer runs serve, controlplane or dataplane until ctx is cancelled
// (SIGINT/SIGTERM), then shuts down in order: stop accepting, drain HTTP,
// close MQTT, close the database and stop the private cluster.
func runServer(ctx context.Context, sub string, args []string, stderr *os.File) error {
	cfg, _, err := parseConfig(sub, args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	if err := prepareDataDir(cfg.DataDir); err != nil {
		return err
	}
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()

	withControl := sub == "serve" || sub == "controlplane"
	withData := sub == "serve" || sub == "dataplane"
	tuneGC := withData && os.Getenv("GOGC") == ""
	if tuneGC {
		// A node's heap is mostly long-lived connection state; the default
		// GOGC (100) lets resident memory reach twice that. 25 keeps it
		// near the live size while idle (BenchmarkGateway/IdleMemory); the
		// tuner below raises it to 200 while messages flow (≥ 1,000/s), where
		// collection would otherwise cost throughput (BenchmarkGateway/QoS1*).
		// GOGC in the environment turns this off.
		debug.SetGCPercent(25)
	}
	var checks []api.ReadyCheck
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()

	// Bind every port first so a port in use fails before anything starts.
	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listener on %s: %w", cfg.HTTPAddr, err)
	}
	cleanups = append(cleanups, func() { httpLn.Close() })
	var metricsLn net.Listener
	if on(cfg.MetricsAddr) {
		if metricsLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return fmt.Errorf("metrics listener on %s: %w", cfg.MetricsAddr, err)
		}
		cleanups = append(cleanups, func() { metricsLn.Close() })
	}
	procMetrics := newProcessRegistry()
	var public *url.URL // where users reach the console and API
	if withControl {
		if public, err = publicURL(cfg, httpLn.Addr()); err != nil {
			return err
		}
	}

	var gw *gateway.Gateway
	var state *configsync.State
	var nodeID string
	var dp *dataPlane              // set before the HTTP server starts
	nodeSrv := nodeapi.NewServer() // this node's API (consumer groups)
	var fwd *forward.Service       // forwarding rules
	var fwdSecrets *ruleSecrets
	closeGW := func() {}
	if withData {
		bound, err := time.ParseDuration(cfg.SyncReadyBound)
		if err != nil || bound <= 0 {
			return fmt.Errorf("%w: --sync-ready-bound %q is not a positive duration (e.g. 10s)", errUsage, cfg.SyncReadyBound)
		}
		// Not ready while the node has not followed the control plane for
		// longer than the bound: it may be serving revoked credentials.
		checks = append(checks, api.ReadyCheck{Name: "config-sync", Fn: func(context.Context) error {
			if dp == nil {
				return errors.New("not started")
			}
			return dp.client.InSync(bound)
		}})
		if sub == "dataplane" {
			if cfg.ControlPlane == "" || cfg.NodeToken == "" {
				return fmt.Errorf("%w: aerie dataplane needs --control-plane URL and --node-token TOKEN (create one with 'aerie node create NAME')", errUsage)
			}
			if nodeID, err = nodeIDFromToken(cfg.NodeToken); err != nil {
				return err
			}
		}
		retentionEvery, err := time.ParseDuration(cfg.RetentionEvery)
		if err != nil || retentionEvery <= 0 {
			return fmt.Errorf("%w: --retention-interval %q is not a positive duration (e.g. 1m)", errUsage, cfg.RetentionEvery)
		}
		st, err := store.Open(filepath.Join(cfg.DataDir, "store"), store.Options{RetentionInterval: retentionEvery})
		if err != nil {
			return fmt.Errorf("message store: %w", err)
		}
		cleanups = append(cleanups, func() { st.Close() })
		state = configsync.NewState()
		gwOpts := gateway.Options{MQTTAddr: cfg.MQTTAddr, WSAddr: cfg.WSAddr, Log: log, Config: state,
			DefaultInstance: cfg.DefaultInstance, BaseDomain: cfg.BaseDomain, Store: st, RetentionInterval: retentionEvery}
		if gwOpts.MaxConnectBytes, err = strconv.Atoi(cfg.MaxConnectBytes); err != nil || gwOpts.MaxConnectBytes < 128 {
			return fmt.Errorf("%w: --max-connect-bytes %q: a number of bytes, at least 128", errUsage, cfg.MaxConnectBytes)
		}
		if cfg.ProxyProtocol != "" {
			gwOpts.ProxyProtocol = map[string]bool{}
			for _, l := range strings.Split(cfg.ProxyProtocol, ",") {
				l = strings.TrimSpace(l)
				if l != "mqtt" && l != "mqtts" && l != "ws" && l != "wss" {
					return fmt.Errorf("%w: --proxy-protocol: unknown listener %q (mqtt, mqtts, ws, wss)", errUsage, l)
				}
				gwOpts.ProxyProtocol[l] = true
			}
		}
		if on(cfg.MQTTSAddr) || on(cfg.WSSAddr) {
			hosts := []string{cfg.PublicHost}
			if cfg.BaseDomain != "" {
				hosts = append(hosts, "*."+strings.TrimPrefix(cfg.BaseDomain, "."))
			}
			tc, err := gateway.TLSConfig(cfg.TLSCert, cfg.TLSKey, filepath.Join(cfg.DataDir, "tls"), hosts)
			if err != nil {
				return err
			}
			gwOpts.TLS = tc
			if on(cfg.MQTTSAddr) {
				gwOpts.TLSAddr = cfg.MQTTSAddr
			}
			if on(cfg.WSSAddr) {
				gwOpts.WSSAddr = cfg.WSSAddr
			}
		}
		gw, err = gateway.New(gwOpts)
		if err != nil {
			return err
		}
		consume.New(st, state).Register(nodeSrv)
		if fwd, fwdSecrets, err = newForwarder(cfg, log, st, state); err != nil {
			return err
		}
		fwd.Register(nodeSrv)
		gw.RegisterInspect(nodeSrv)
		if tuneGC {
			tuner := &gctune.Tuner{Idle: 25, Busy: 200, BusyRate: 1000, Count: gw.Metrics().MessagesTotal, Set: debug.SetGCPercent,
				OnChange: func(v int) { log.Debug("GC target changed with the load", "gogc", v) }}
			go tuner.Run(ctx)
		}
		closeGW = sync.OnceFunc(func() { gw.Close() })
		cleanups = append(cleanups, closeGW)
		checks = append(checks, api.ReadyCheck{Name: "mqtt", Fn: func(context.Context) error { return gw.Ready() }})
	}

	var pool *pgxpool.Pool
	if withControl {
		var stopDB func()
		pool, stopDB, err = openDatabase(ctx, cfg, log)
		if err != nil {
			return err
		}
		cleanups = append(cleanups, stopDB)
		runner, err := migrations.New(pool, log)
		if err != nil {
			return err
		}
		cleanups = append(cleanups, func() { runner.Close() })
		n, err := runner.Up(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			log.Info("applied database migrations", "count", n)
		}
		checks = append(checks,
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
	}
	deps := api.Deps{Log: log, Ready: checks, Metrics: procMetrics}
	local := &nodeapi.Local{Server: nodeSrv}
	if withControl {
		keys, err := secretKeys(cfg, sub, log)
		if err != nil {
			return err
		}
		deps.DB = pool
		deps.Tenancy = tenancy.NewService(pool, log, tenancy.WithMailer(mailer.FromEnv(os.Getenv, log)), tenancy.WithBaseURL(public.String()),
			tenancy.WithSecretKeys(keys))
		// Seal what an older binary stored in plain and what an older key
		// sealed: this completes a key rotation.
		if n, err := deps.Tenancy.SealSecrets(ctx); err != nil {
			return err
		} else if n > 0 {
			log.Info("sealed secrets with the current key-encryption key", "count", n)
		}
		deps.Billing = billing.NewService(pool, planApplier{deps.Tenancy}, log)
		deps.Meter = billing.NewMeter(pool, deps.Tenancy, log)
		deps.Feed = tenancy.NewFeed(deps.Tenancy, log.With("component", "configfeed"))
		go deps.Feed.Run(ctx)
		// Spend limits and capped allowances (Free): checked every 2 s, so a
		// limit applies within moments of the usage report that shows it.
		go deps.Billing.RunLimits(ctx, deps.Tenancy, 2*time.Second)
		// Month-end invoices (idempotent across control-plane replicas) and
		// overdue marking; payments are the built-in manual method.
		go deps.Billing.RunPeriodClose(ctx, billing.Manual{}, time.Minute)
		if deps.AdminToken, err = adminToken(cfg, sub, log); err != nil {
			return err
		}
		procMetrics.MustRegister(newControlPlaneCollector(deps.Tenancy))
		if withData {
			deps.NodeAPI = local
		} else {
			svc := deps.Tenancy
			deps.NodeAPI = &nodeapi.HTTP{Resolve: func(ctx context.Context, node string) (string, string, error) {
				u, hash, err := svc.NodeAPITarget(ctx, node)
				if err != nil {
					return "", "", err
				}
				return u, nodeapi.Secret(hash), nil
			}}
		}
		deps.Nodes = nodeInspector{c: deps.NodeAPI}
	}
	router := api.NewRouter(deps)
	if sub == "dataplane" {
		// The node API the control plane proxies consumer-group reads to.
		router.Handle(nodeapi.Path+"{op}", nodeapi.HTTPHandler(nodeSrv, nodeapi.SecretFromToken(cfg.NodeToken)))
		if cfg.NodeAPIURL == "" {
			_, port, _ := net.SplitHostPort(httpLn.Addr().String())
			host := cfg.PublicHost
			if host == "" {
				host = "localhost"
			}
			cfg.NodeAPIURL = "http://" + net.JoinHostPort(host, port)
		}
	}
	gatherers := prometheus.Gatherers{procMetrics}
	if gw != nil {
		fwdMetrics := prometheus.NewRegistry()
		fwdMetrics.MustRegister(fwd.Collector())
		gatherers = append(gatherers, gw.Metrics(), fwdMetrics)
	}
	if withControl {
		key, err := consoleKey(ctx, pool)
		if err != nil {
			return err
		}
		router.Mount("/", console.New(console.Deps{Tenancy: deps.Tenancy, Billing: deps.Billing, Meter: deps.Meter, Log: log, CSRFKey: key, Sync: deps.Feed,
			Nodes: deps.Nodes, NodeAPI: deps.NodeAPI, Secure: public.Scheme == "https"}))
	}
	if withData {
		var src configsync.Source
		cpURL, token := cfg.ControlPlane, cfg.NodeToken
		if sub == "serve" {
			node, tok, err := deps.Tenancy.EnsureNode(ctx, cfg.NodeName, endpoints(cfg, gw))
			if err != nil {
				return fmt.Errorf("register this node: %w", err)
			}
			nodeID, cpURL, token = node.ID, loopbackURL(httpLn.Addr()), tok
			local.NodeID = node.ID
			src = tenancy.LocalSource{Feed: deps.Feed, NodeID: node.ID}
		} else {
			src = &configsync.HTTPSource{BaseURL: cfg.ControlPlane, NodeID: nodeID, Token: cfg.NodeToken}
		}
		runCtx, cancelRun := context.WithCancel(ctx)
		cleanups = append(cleanups, cancelRun)
		fwdSecrets.nodeID, fwdSecrets.cpURL, fwdSecrets.token = nodeID, cpURL, token
		if sub == "serve" {
			fwdSecrets.svc = deps.Tenancy
		}
		if dp, err = startDataPlane(runCtx, cfg, log, gw, state, src, nodeID, cpURL, token, fwd); err != nil {
			return err
		}
	}
	httpSrv := &http.Server{Handler: router, ReadHeaderTimeout: 10 * time.Second}
	httpErr := make(chan error, 1)
	go func() { httpErr <- httpSrv.Serve(httpLn) }()
	if metricsLn != nil {
		metricsSrv := &http.Server{Handler: metricsHandler(log, gatherers), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = metricsSrv.Serve(metricsLn) }()
		cleanups = append(cleanups, func() { metricsSrv.Close() })
		log.Info("metrics listening", "addr", metricsLn.Addr().String(), "path", "/metrics")
	}
	if gw != nil {
		if err := gw.Start(); err != nil {
			return err
		}
		log.Info("mqtt listening", "tcp", gw.MQTTAddr(), "ws", gw.WSAddr()+"/mqtt")
	}
	if public != nil {
		log.Info("aerie started", "mode", sub, "http", httpLn.Addr().String(), "console", public.String()+"/", "public_url", public.String())
	} else {
		log.Info("aerie started", "mode", sub, "http", httpLn.Addr().String())
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-httpErr:
		return fmt.Errorf("http server: %w", err)
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if err := httpSrv.Shutdown(shutCtx); err != nil {
		log.Warn("http drain incomplete", "error", err)
		httpSrv.Close()
	}
	closeGW()
	return nil
}

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

var _ = errors.New

// consoleKey returns the key that signs the console's CSRF tokens, created
// once and kept in the settings table so every control-plane process (and
// every restart) accepts the same forms.
func consoleKey(ctx context.Context, pool *pgxpool.Pool) ([]byte, error) {
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, `INSERT INTO settings (key, value) VALUES ('console_csrf_key', to_jsonb($1::text))
		ON CONFLICT (key) DO NOTHING`, base64.StdEncoding.EncodeToString(fresh)); err != nil {
		return nil, fmt.Errorf("console key: %w", err)
	}
	var enc string
	if err := pool.QueryRow(ctx, `SELECT value #>> '{}' FROM settings WHERE key = 'console_csrf_key'`).Scan(&enc); err != nil {
		return nil, fmt.Errorf("console key: %w", err)
	}
	return base64.StdEncoding.DecodeString(enc)
}

// on reports whether a listen address enables its listener ("off" or
// empty disables it).
func on(addr string) bool { return addr != "" && addr != "off" }
