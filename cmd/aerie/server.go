package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/aeriemq/aerie/api"
	"github.com/aeriemq/aerie/console"
)

// runServer runs serve, controlplane or dataplane until ctx is cancelled
// (SIGINT/SIGTERM), then shuts down in order: stop accepting, drain HTTP,
// close MQTT, close the database and stop the private cluster.
func runServer(ctx context.Context, sub string, args []string, stderr *os.File) error {
	s, err := openServer(ctx, sub, args, stderr)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Run(ctx)
}

// server is one aerie process: the halves its mode runs (controlPlane,
// dataPlane or both) and what they share (listeners, HTTP router, readiness
// checks, process metrics). Close releases what Open acquired, in reverse.
type server struct {
	sub    string
	cfg    *config
	log    *slog.Logger
	checks []api.ReadyCheck
	// closers run in reverse order on Close.
	closers []func()

	httpLn, metricsLn net.Listener
	procMetrics       *prometheus.Registry
	public            *url.URL // where users reach the console and API (control plane)

	cp     *controlPlane // nil in `aerie dataplane`
	node   *node         // nil in `aerie controlplane`
	router chi.Router
}

// openServer reads the configuration, binds every port (so a port in use
// fails before anything starts) and builds the process's halves.
func openServer(ctx context.Context, sub string, args []string, stderr *os.File) (_ *server, err error) {
	cfg, _, err := parseConfig(sub, args, stderr)
	if err != nil {
		return nil, err
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return nil, err
	}
	if err := prepareDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	s := &server{sub: sub, cfg: cfg, log: log, closers: []func(){unlock}, procMetrics: newProcessRegistry()}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := s.listen(); err != nil {
		return nil, err
	}
	withControl, withData := sub == "serve" || sub == "controlplane", sub == "serve" || sub == "dataplane"
	if withData {
		if s.node, err = openNode(ctx, s); err != nil {
			return nil, err
		}
	}
	if withControl {
		if s.public, err = publicURL(cfg, s.httpLn.Addr()); err != nil {
			return nil, err
		}
		if s.cp, err = openControlPlane(ctx, s); err != nil {
			return nil, err
		}
	}
	if err := s.buildRouter(ctx); err != nil {
		return nil, err
	}
	if s.node != nil {
		if err := s.node.follow(ctx, s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// onClose registers f to run on Close (last registered first).
func (s *server) onClose(f func()) { s.closers = append(s.closers, f) }

// Close releases everything, last acquired first.
func (s *server) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// listen binds the HTTP and metrics ports.
func (s *server) listen() error {
	ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listener on %s: %w", s.cfg.HTTPAddr, err)
	}
	s.httpLn = ln
	s.onClose(func() { ln.Close() })
	if on(s.cfg.MetricsAddr) {
		mln, err := net.Listen("tcp", s.cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("metrics listener on %s: %w", s.cfg.MetricsAddr, err)
		}
		s.metricsLn = mln
		s.onClose(func() { mln.Close() })
	}
	return nil
}

// buildRouter assembles the HTTP handler: health, and the API and console
// of the control plane, or the node link's request path of a node.
func (s *server) buildRouter(ctx context.Context) error {
	deps := api.Deps{Log: s.log, Ready: s.checks, Metrics: s.procMetrics}
	if s.cp != nil {
		s.cp.fill(&deps)
	}
	s.router = api.NewRouter(deps)
	if s.sub == "dataplane" {
		s.node.serveRequests(s.router, s.cfg, s.httpLn.Addr())
	}
	if s.cp == nil {
		return nil
	}
	key, err := s.cp.svc.ConsoleKey(ctx)
	if err != nil {
		return err
	}
	s.router.Mount("/", console.New(console.Deps{Tenancy: s.cp.svc, Billing: s.cp.billing, Meter: s.cp.meter, Log: s.log, CSRFKey: key,
		Sync: s.cp.feed, Nodes: deps.Nodes, NodeAPI: deps.NodeAPI, Secure: s.public.Scheme == "https"}))
	return nil
}

// Run serves until ctx ends or the HTTP server fails, then drains HTTP and
// closes MQTT.
func (s *server) Run(ctx context.Context) error {
	httpSrv := &http.Server{Handler: s.router, ReadHeaderTimeout: 10 * time.Second}
	httpErr := make(chan error, 1)
	go func() { httpErr <- httpSrv.Serve(s.httpLn) }()
	if s.metricsLn != nil {
		gatherers := prometheus.Gatherers{s.procMetrics}
		if s.node != nil {
			gatherers = append(gatherers, s.node.gw.Metrics())
			if s.node.fwd != nil {
				fwdMetrics := prometheus.NewRegistry()
				fwdMetrics.MustRegister(s.node.fwd.Collector())
				gatherers = append(gatherers, fwdMetrics)
			}
		}
		metricsSrv := &http.Server{Handler: metricsHandler(s.log, gatherers), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = metricsSrv.Serve(s.metricsLn) }()
		s.onClose(func() { metricsSrv.Close() })
		s.log.Info("metrics listening", "addr", s.metricsLn.Addr().String(), "path", "/metrics")
	}
	if s.node != nil {
		if err := s.node.gw.Start(); err != nil {
			return err
		}
		s.log.Info("mqtt listening", "tcp", s.node.gw.MQTTAddr(), "ws", s.node.gw.WSAddr()+"/mqtt")
	}
	if s.public != nil {
		s.log.Info("aerie started", "mode", s.sub, "http", s.httpLn.Addr().String(), "console", s.public.String()+"/", "public_url", s.public.String())
	} else {
		s.log.Info("aerie started", "mode", s.sub, "http", s.httpLn.Addr().String())
	}
	select {
	case <-ctx.Done():
		s.log.Info("shutting down")
	case err := <-httpErr:
		return fmt.Errorf("http server: %w", err)
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if err := httpSrv.Shutdown(shutCtx); err != nil {
		s.log.Warn("http drain incomplete", "error", err)
		httpSrv.Close()
	}
	if s.node != nil {
		s.node.closeGW()
	}
	return nil
}

// tuneGC lowers the GC target of a node (unless GOGC is set): a node's
// heap is mostly long-lived connection state, and the default GOGC (100)
// lets resident memory reach twice that. 25 keeps it near the live size
// while idle (BenchmarkGateway/IdleMemory); a tuner raises it to 200 while
// messages flow (≥ 1,000/s), where collection would otherwise cost
// throughput (BenchmarkGateway/QoS1*).
func tuneGC() bool {
	if os.Getenv("GOGC") != "" {
		return false
	}
	debug.SetGCPercent(25)
	return true
}

// on reports whether a listen address enables its listener ("off" or
// empty disables it).
func on(addr string) bool { return addr != "" && addr != "off" }
