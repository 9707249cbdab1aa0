package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aeriemq/aerie/dataplane/store/jsstore"
)

// cellOptions are the checked cell flags of `aerie dataplane --cell`.
type cellOptions struct {
	name     string
	server   jsstore.ServerConfig
	replicas int
	nodeTTL  time.Duration
}

// cellName is the rule of a cell's name (the control plane's too).
var cellName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// parseCell checks the cell flags; nodeID names the node's NATS server.
func parseCell(cfg *config, nodeID string) (cellOptions, error) {
	o := cellOptions{name: cfg.Cell}
	if !cellName.MatchString(o.name) {
		return o, fmt.Errorf("%w: --cell %q: 1 to 64 letters, digits, '-' or '_' (it names the cell's JetStream cluster)", errUsage, o.name)
	}
	ttl, err := time.ParseDuration(cfg.CellNodeTTL)
	if err != nil || ttl < time.Second {
		return o, fmt.Errorf("%w: --cell-node-ttl %q: a duration of at least 1s", errUsage, cfg.CellNodeTTL)
	}
	o.nodeTTL = ttl
	o.replicas, err = strconv.Atoi(cfg.CellReplicas)
	if err != nil || o.replicas < 1 || o.replicas > 5 {
		return o, fmt.Errorf("%w: --cell-replicas %q: 1 to 5", errUsage, cfg.CellReplicas)
	}
	// Without a secret (a cell of one node) the server has no client port:
	// the store connects in process.
	o.server = jsstore.ServerConfig{Name: nodeID, Dir: filepath.Join(cfg.DataDir, "jetstream"), ClusterName: o.name, Secret: cfg.ClusterSecret}
	if o.server.Host, o.server.Port, err = hostPort(cfg.CellNATSAddr, "--cell-nats-addr"); err != nil {
		return o, err
	}
	switch {
	case cfg.ClusterSecret == "" && o.server.Port != 0:
		// Without a secret the NATS port would take anyone on the host.
		return o, fmt.Errorf("%w: --cell-nats-addr %q needs --cluster-secret (the port is authenticated with it)", errUsage, cfg.CellNATSAddr)
	case cfg.ClusterSecret != "" && o.server.Port == 0:
		o.server.Port = -1 // a random port, authenticated
	}
	for _, r := range strings.Split(cfg.ClusterRoutes, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		if !strings.Contains(r, "://") {
			r = "nats://" + r
		}
		o.server.Routes = append(o.server.Routes, r)
	}
	if len(o.server.Routes) == 0 {
		o.replicas = 1 // a cell of one node
		o.server.ClusterName = ""
	} else if cfg.ClusterSecret == "" {
		return o, fmt.Errorf("%w: a cell of several nodes needs --cluster-secret (its routes and NATS port are authenticated)", errUsage)
	}
	if o.server.ClusterHost, o.server.ClusterPort, err = hostPort(cfg.ClusterAddr, "--cluster-addr"); err != nil {
		return o, err
	}
	return o, nil
}

func hostPort(addr, flag string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %s %q: %v", errUsage, flag, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("%w: %s %q: bad port", errUsage, flag, addr)
	}
	return h, n, nil
}

// openCellStore starts the node's embedded NATS server in the cell and
// opens the JetStream store on it, waiting (with progress in the log) for
// the cell's JetStream to have a quorum.
func openCellStore(ctx context.Context, s *server, nodeID string) (*jsstore.Store, error) {
	o, err := parseCell(s.cfg, nodeID)
	if err != nil {
		return nil, err
	}
	if err := prepareDataDir(o.server.Dir); err != nil {
		return nil, err
	}
	ns, err := jsstore.StartServer(o.server)
	if err != nil {
		return nil, fmt.Errorf("cell %s: %w", o.name, err)
	}
	s.onClose(ns.Shutdown)
	nc, err := jsstore.ConnectSecret(ns, s.cfg.ClusterSecret)
	if o.server.Secret == "" {
		nc, err = jsstore.Connect(ns)
	}
	if err != nil {
		return nil, err
	}
	s.onClose(nc.Close)
	s.log.Info("cell member started", "cell", o.name, "node", nodeID, "replicas", o.replicas,
		"routes", len(o.server.Routes), "nats", ns.ClientURL())
	start := time.Now()
	for {
		// Short attempts: the cell's meta leader is usually elected a few
		// seconds after the last route is up.
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := jsstore.Open(actx, nc, jsstore.Options{Node: nodeID, Replicas: o.replicas, NodeTimeout: o.nodeTTL, Timeout: cellCallTimeout})
		cancel()
		if err == nil {
			s.onClose(func() { st.Close() })
			s.log.Info("cell store ready", "cell", o.name, "after", time.Since(start).Round(time.Millisecond))
			return st, nil
		}
		if ctx.Err() != nil || time.Since(start) > 2*time.Minute {
			return nil, fmt.Errorf("cell %s: store: %w", o.name, err)
		}
		s.log.Info("waiting for the cell's JetStream quorum", "cell", o.name, "waited", time.Since(start).Round(time.Second), "error", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// cellCallTimeout bounds each JetStream call of a cell node: a call that
// met a dead stream leader fails after it and is retried (appends retry
// within it by message ID), so a failover costs about the election, not a
// long timeout.
const cellCallTimeout = 5 * time.Second
