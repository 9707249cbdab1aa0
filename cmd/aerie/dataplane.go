package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/api"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/consume"
	"github.com/aeriemq/aerie/dataplane/forward"
	"github.com/aeriemq/aerie/dataplane/gateway"
	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/dataplane/usagereport"
	"github.com/aeriemq/aerie/internal/gctune"
	"github.com/aeriemq/aerie/nodelink"
)

// node is the data plane's half of a process: the gateway over its store,
// the config it follows and the usage it reports over the node link, and
// the link's operations it serves.
type node struct {
	id      string // known at start in `aerie dataplane`, after registration in `aerie serve`
	gw      *gateway.Gateway
	state   *configsync.State
	srv     *nodelink.Server
	local   *nodelink.Local // the control plane's caller in `aerie serve`
	client  *configsync.Client
	closeGW func()
	fwd     *forward.Service // forwarding rules
	secrets *ruleSecrets
	usage   time.Duration // how often usage is reported
}

// openNode opens the store and the gateway (not yet listening) and
// registers the node's operations; Run starts the gateway.
func openNode(ctx context.Context, s *server) (*node, error) {
	cfg := s.cfg
	bound, err := time.ParseDuration(cfg.SyncReadyBound)
	if err != nil || bound <= 0 {
		return nil, fmt.Errorf("%w: --sync-ready-bound %q is not a positive duration (e.g. 10s)", errUsage, cfg.SyncReadyBound)
	}
	usage, err := time.ParseDuration(cfg.UsageEvery)
	if err != nil || usage <= 0 {
		return nil, fmt.Errorf("%w: --usage-interval %q is not a positive duration (e.g. 10s)", errUsage, cfg.UsageEvery)
	}
	n := &node{srv: nodelink.NewServer(), state: configsync.NewState(), usage: usage}
	n.local = &nodelink.Local{Server: n.srv}
	// Not ready while the node has not followed the control plane for
	// longer than the bound: it may be serving revoked credentials.
	s.checks = append(s.checks, api.ReadyCheck{Name: "config-sync", Fn: func(context.Context) error {
		if n.client == nil {
			return errors.New("not started")
		}
		return n.client.InSync(bound)
	}})
	if s.sub == "dataplane" {
		if cfg.ControlPlane == "" || cfg.NodeToken == "" {
			return nil, fmt.Errorf("%w: aerie dataplane needs --control-plane URL and --node-token TOKEN (create one with 'aerie node create NAME')", errUsage)
		}
		if n.id, err = nodeIDFromToken(cfg.NodeToken); err != nil {
			return nil, err
		}
	}
	gwOpts, err := gatewayOptions(cfg)
	if err != nil {
		return nil, err
	}
	retention, err := time.ParseDuration(cfg.RetentionEvery)
	if err != nil || retention <= 0 {
		return nil, fmt.Errorf("%w: --retention-interval %q is not a positive duration (e.g. 1m)", errUsage, cfg.RetentionEvery)
	}
	if cfg.Cell != "" {
		cs, err := openCellStore(ctx, s, n.id)
		if err != nil {
			return nil, err
		}
		gwOpts.Store = cs
		// Topic queues, consumer groups and dead letters live in the
		// cell's JetStream; each rule runs on the holder of its lease.
		consume.New(cs, n.state).Register(n.srv)
		if n.fwd, n.secrets, err = newForwarder(cfg, s.log, cs, cs, n.state); err != nil {
			return nil, err
		}
		n.fwd.Register(n.srv)
	} else {
		st, err := store.Open(filepath.Join(cfg.DataDir, "store"), store.Options{RetentionInterval: retention})
		if err != nil {
			return nil, fmt.Errorf("message store: %w", err)
		}
		s.onClose(func() { st.Close() })
		gwOpts.Store = st
		consume.New(st, n.state).Register(n.srv)
		if n.fwd, n.secrets, err = newForwarder(cfg, s.log, st, nil, n.state); err != nil {
			return nil, err
		}
		n.fwd.Register(n.srv)
	}
	gwOpts.Log, gwOpts.Config = s.log, n.state
	if n.gw, err = gateway.New(gwOpts); err != nil {
		return nil, err
	}
	n.gw.RegisterInspect(n.srv)
	if tuneGC() {
		tuner := &gctune.Tuner{Idle: 25, Busy: 200, BusyRate: 1000, Count: n.gw.Metrics().MessagesTotal, Set: debug.SetGCPercent,
			OnChange: func(v int) { s.log.Debug("GC target changed with the load", "gogc", v) }}
		go tuner.Run(ctx)
	}
	n.closeGW = sync.OnceFunc(func() { n.gw.Close() })
	s.onClose(n.closeGW)
	s.checks = append(s.checks, api.ReadyCheck{Name: "mqtt", Fn: func(context.Context) error { return n.gw.Ready() }})
	return n, nil
}

// gatewayOptions reads the gateway's flags (no store or config yet).
func gatewayOptions(cfg *config) (gateway.Options, error) {
	o := gateway.Options{MQTTAddr: cfg.MQTTAddr, WSAddr: cfg.WSAddr, DefaultInstance: cfg.DefaultInstance, BaseDomain: cfg.BaseDomain}
	var err error
	if o.MaxConnectBytes, err = strconv.Atoi(cfg.MaxConnectBytes); err != nil || o.MaxConnectBytes < 128 {
		return o, fmt.Errorf("%w: --max-connect-bytes %q: a number of bytes, at least 128", errUsage, cfg.MaxConnectBytes)
	}
	if cfg.ProxyProtocol != "" {
		o.ProxyProtocol = map[string]bool{}
		for _, l := range strings.Split(cfg.ProxyProtocol, ",") {
			l = strings.TrimSpace(l)
			if l != "mqtt" && l != "mqtts" && l != "ws" && l != "wss" {
				return o, fmt.Errorf("%w: --proxy-protocol: unknown listener %q (mqtt, mqtts, ws, wss)", errUsage, l)
			}
			o.ProxyProtocol[l] = true
		}
	}
	if on(cfg.MQTTSAddr) || on(cfg.WSSAddr) {
		hosts := []string{cfg.PublicHost}
		if cfg.BaseDomain != "" {
			hosts = append(hosts, "*."+strings.TrimPrefix(cfg.BaseDomain, "."))
		}
		tc, err := gateway.TLSConfig(cfg.TLSCert, cfg.TLSKey, filepath.Join(cfg.DataDir, "tls"), hosts)
		if err != nil {
			return o, err
		}
		o.TLS = tc
		if on(cfg.MQTTSAddr) {
			o.TLSAddr = cfg.MQTTSAddr
		}
		if on(cfg.WSSAddr) {
			o.WSSAddr = cfg.WSSAddr
		}
	}
	return o, nil
}

// serveRequests serves the node link's request path (consumer groups,
// live clients, HTTP publish) to the control plane, authenticated with the
// secret derived from the node token, and settles the URL the node
// announces for it.
func (n *node) serveRequests(r chi.Router, cfg *config, httpAddr net.Addr) {
	r.Handle(nodelink.Path+"{op}", nodelink.ServerHandler(n.srv, nodelink.SecretFromToken(cfg.NodeToken)))
	if cfg.NodeAPIURL == "" {
		_, port, _ := net.SplitHostPort(httpAddr.String())
		host := cfg.PublicHost
		if host == "" {
			host = "localhost"
		}
		cfg.NodeAPIURL = "http://" + net.JoinHostPort(host, port)
	}
}

// follow registers the node (in `aerie serve`), loads its disk snapshot,
// then follows the control plane and reports usage over the node link:
// in process in `aerie serve`, over HTTP in `aerie dataplane`.
func (n *node) follow(ctx context.Context, s *server) error {
	var src nodelink.Source
	if s.cp != nil {
		reg, _, err := s.cp.svc.EnsureNode(ctx, s.cfg.NodeName, endpoints(s.cfg, n.gw))
		if err != nil {
			return fmt.Errorf("register this node: %w", err)
		}
		n.id, n.local.NodeID = reg.ID, reg.ID
		src = nodelink.LocalSource{Hub: s.cp.hub, NodeID: reg.ID}
	} else {
		src = &nodelink.HTTPSource{BaseURL: s.cfg.ControlPlane, NodeID: n.id, Token: s.cfg.NodeToken}
	}
	runCtx, cancel := context.WithCancel(ctx)
	s.onClose(cancel)
	client, err := configsync.NewClient(configsync.Options{Source: src, State: n.state, Dir: filepath.Join(s.cfg.DataDir, "config"),
		Log: s.log.With("component", "configsync"), Endpoints: endpoints(s.cfg, n.gw), APIURL: s.cfg.NodeAPIURL, Connections: n.gw.Connections, Cell: s.cfg.Cell})
	if err != nil {
		return err
	}
	if err := client.Load(runCtx); err != nil {
		s.log.Warn("no usable config snapshot on disk; waiting for the control plane", "error", err)
	} else if n.state.Revision() > 0 {
		s.log.Info("serving from the config snapshot on disk", "revision", n.state.Revision(), "credentials", n.state.Credentials())
	}
	go client.Run(runCtx)
	n.client = client
	sources := usagereport.Merge{n.gw.Metrics()}
	if n.fwd != nil {
		n.secrets.set(src)
		go n.fwd.Run(runCtx) // after the disk snapshot: rules resume from their cursors
		sources = append(sources, n.fwd)
	}
	rep, err := usagereport.New(usagereport.Options{NodeID: n.id, Link: src, Dir: filepath.Join(s.cfg.DataDir, "usage"),
		Interval: n.usage, Log: s.log.With("component", "usage")}, sources)
	if err != nil {
		return err
	}
	go rep.Run(runCtx)
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
