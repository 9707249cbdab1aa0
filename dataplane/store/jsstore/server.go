package jsstore

import (
	"fmt"
	"net/url"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ServerConfig configures the embedded NATS server of a data-plane node.
type ServerConfig struct {
	Name string // server name, unique in a cell
	Dir  string // JetStream store directory
	// Host/Port of the client listener; Port 0 means no listener (the
	// store connects in process; clustered: a random port), -1 a random port.
	Host string
	Port int
	// Cluster: when ClusterName is set the server joins a JetStream
	// cluster (Raft) listening on ClusterHost:ClusterPort (-1 random) and
	// dialling Routes ("nats://host:port").
	ClusterName string
	ClusterHost string
	ClusterPort int
	Routes      []string
	// Secret, when set, is required of every route (cluster user "aerie")
	// and every client connection (user "aerie"), the in-process one
	// included (ConnectSecret).
	Secret string
}

// Fsync policy: the server runs with SyncAlways. A single-replica stream
// then writes each message with O_SYNC before the PubAck; a replicated
// stream fsyncs its Raft WAL before it counts an entry as stored, so a
// PubAck means "on disk on a quorum". JetStream's default (fsync every 2
// minutes, SyncInterval) would make an acknowledged message losable in a
// power loss and is not used.
const fsyncAlways = true

// ServerOptions returns the NATS server options of cfg.
func ServerOptions(cfg ServerConfig) (*server.Options, error) {
	o := &server.Options{
		ServerName:     cfg.Name,
		JetStream:      true,
		StoreDir:       cfg.Dir,
		SyncAlways:     fsyncAlways,
		SyncInterval:   time.Minute, // unused under SyncAlways; set so the 2 min default is not implied
		Host:           cfg.Host,
		Port:           cfg.Port,
		DontListen:     cfg.Port == 0,
		NoSigs:         true,
		NoLog:          true,
		MaxControlLine: 1 << 18, // escaped 64 KiB MQTT topics fit in a subject
		MaxPayload:     8 << 20,
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if cfg.ClusterName != "" {
		// Routing waits for the client listener: a clustered server
		// always has one (a random port unless set).
		if o.Port == 0 {
			o.Port, o.DontListen = -1, false
		}
		o.Cluster = server.ClusterOpts{Name: cfg.ClusterName, Host: cfg.ClusterHost, Port: cfg.ClusterPort}
		if o.Cluster.Host == "" {
			o.Cluster.Host = "127.0.0.1"
		}
		for _, r := range cfg.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("jsstore: route %q: %w", r, err)
			}
			if cfg.Secret != "" {
				u.User = url.UserPassword(secretUser, cfg.Secret)
			}
			o.Routes = append(o.Routes, u)
		}
		if cfg.Secret != "" {
			o.Cluster.Username, o.Cluster.Password = secretUser, cfg.Secret
		}
	}
	if cfg.Secret != "" {
		o.Username, o.Password = secretUser, cfg.Secret
	}
	return o, nil
}

// StartServer starts an embedded NATS server with JetStream and waits until
// it accepts connections (a clustered server: until its routes are up is
// not awaited; JetStream calls wait for a meta leader).
func StartServer(cfg ServerConfig) (*server.Server, error) {
	o, err := ServerOptions(cfg)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("jsstore: new server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("jsstore: server %s not ready", cfg.Name)
	}
	return ns, nil
}

// secretUser is the user name of routes and clients when a secret is set.
const secretUser = "aerie"

// ConnectSecret opens an in-process client connection to a server started
// with ServerConfig.Secret.
func ConnectSecret(ns *server.Server, secret string) (*nats.Conn, error) {
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name("aerie-store"), nats.MaxReconnects(-1), nats.UserInfo(secretUser, secret))
	if err != nil {
		return nil, fmt.Errorf("jsstore: connect: %w", err)
	}
	return nc, nil
}

// Connect opens an in-process client connection to ns.
func Connect(ns *server.Server) (*nats.Conn, error) {
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name("aerie-store"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("jsstore: connect: %w", err)
	}
	return nc, nil
}
