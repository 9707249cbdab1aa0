package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/aeriemq/aerie/internal/safelog"
)

// config is every setting a subcommand may take. Each flag has an
// environment equivalent; secrets may also come from <ENV>_FILE.
type config struct {
	HTTPAddr        string
	MQTTAddr        string
	WSAddr          string
	DataDir         string
	DatabaseURL     string
	LogLevel        string
	LogFormat       string
	PGBinDir        string
	ControlPlane    string
	NodeToken       string
	NodeName        string
	PublicHost      string
	MQTTSAddr       string
	WSSAddr         string
	TLSCert         string
	TLSKey          string
	ProxyProtocol   string
	PublicMQTTPort  string
	PublicWSPort    string
	AdminToken      string
	DefaultInstance string
	BaseDomain      string
	SyncReadyBound  string
	RetentionEvery  string
	UsageEvery      string
	NodeAPIURL      string
	MaxConnectBytes string
	PublicURL       string
	MetricsAddr     string
	SecretKeyFile   string
	// Cells: the cell a node is started as a member of (sent with its
	// heartbeat, checked against its registration) and how long a node may
	// stay silent before the control plane counts it down.
	Cell          string
	NodeDownAfter string
	// Forwarding rules (dataplane/forward).
	ForwardCAFile       string
	ForwardAllowPrivate string
	// A data-plane node of a cell (cmd/aerie/cell.go) stores on the
	// cell's embedded, replicated JetStream instead of RocksDB.
	ClusterAddr   string
	ClusterRoutes string
	ClusterSecret string
	CellReplicas  string
	CellNATSAddr  string
	CellNodeTTL   string
}

// flagSpec names one flag and its environment variable.
type flagSpec struct {
	name, env, def, usage string
	secret                bool
	dst                   func(*config) *string
}

var allFlags = []flagSpec{
	{"http-addr", "AERIE_HTTP_ADDR", ":8080", "HTTP listen address (API, console, health)", false, func(c *config) *string { return &c.HTTPAddr }},
	{"mqtt-addr", "AERIE_MQTT_ADDR", ":1883", "MQTT TCP listen address", false, func(c *config) *string { return &c.MQTTAddr }},
	{"ws-addr", "AERIE_WS_ADDR", ":8083", "MQTT over WebSocket listen address (path /mqtt)", false, func(c *config) *string { return &c.WSAddr }},
	{"mqtts-addr", "AERIE_MQTTS_ADDR", ":8883", "MQTT over TLS listen address (\"off\" disables it)", false, func(c *config) *string { return &c.MQTTSAddr }},
	{"wss-addr", "AERIE_WSS_ADDR", ":8084", "MQTT over secure WebSocket listen address, path /mqtt (\"off\" disables it)", false, func(c *config) *string { return &c.WSSAddr }},
	{"tls-cert", "AERIE_TLS_CERT", "", "certificate file (PEM) for the TLS listeners; empty: a self-signed one under <data-dir>/tls", false, func(c *config) *string { return &c.TLSCert }},
	{"tls-key", "AERIE_TLS_KEY", "", "private key file (PEM) of --tls-cert", false, func(c *config) *string { return &c.TLSKey }},
	{"proxy-protocol", "AERIE_PROXY_PROTOCOL", "", "listeners behind a load balancer sending a PROXY protocol v1/v2 header: a comma list of mqtt, mqtts, ws, wss", false, func(c *config) *string { return &c.ProxyProtocol }},
	{"data-dir", "AERIE_DATA_DIR", "./data", "directory for the private Postgres cluster and node state", false, func(c *config) *string { return &c.DataDir }},
	{"database-url", "DATABASE_URL", "", "Postgres URL; empty starts a private cluster under <data-dir>/pg", true, func(c *config) *string { return &c.DatabaseURL }},
	{"log-level", "AERIE_LOG_LEVEL", "info", "log level: debug, info, warn, error", false, func(c *config) *string { return &c.LogLevel }},
	{"log-format", "AERIE_LOG_FORMAT", "auto", "log format: auto (text on a terminal, JSON otherwise), text, json", false, func(c *config) *string { return &c.LogFormat }},
	{"pg-bin-dir", "AERIE_PG_BINDIR", "", "directory of the PostgreSQL server binaries (default: pg_config --bindir, then /usr/lib/postgresql/*/bin)", false, func(c *config) *string { return &c.PGBinDir }},
	{"control-plane", "AERIE_CONTROL_PLANE", "", "control plane base URL a data-plane node connects to", false, func(c *config) *string { return &c.ControlPlane }},
	{"node-token", "AERIE_NODE_TOKEN", "", "token the data-plane node authenticates with", true, func(c *config) *string { return &c.NodeToken }},
	{"node-name", "AERIE_NODE_NAME", "local", "name under which serve registers its own data-plane node", false, func(c *config) *string { return &c.NodeName }},
	{"public-host", "AERIE_PUBLIC_HOST", "localhost", "host name devices use to reach this node's MQTT listeners (shown as instance endpoints)", false, func(c *config) *string { return &c.PublicHost }},
	{"public-mqtt-port", "AERIE_PUBLIC_MQTT_PORT", "", "MQTT port devices reach this node on, when it differs from --mqtt-addr's (port mapping, load balancer)", false, func(c *config) *string { return &c.PublicMQTTPort }},
	{"public-ws-port", "AERIE_PUBLIC_WS_PORT", "", "WebSocket port devices reach this node on, when it differs from --ws-addr's", false, func(c *config) *string { return &c.PublicWSPort }},
	{"admin-token", "AERIE_ADMIN_TOKEN", "", "operator token for /v1/admin (serve: generated into <data-dir>/admin-token when empty)", true, func(c *config) *string { return &c.AdminToken }},
	{"default-instance", "AERIE_DEFAULT_INSTANCE", "", "instance for devices that name none (no @<instance> in the username, no host name)", false, func(c *config) *string { return &c.DefaultInstance }},
	{"retention-interval", "AERIE_RETENTION_INTERVAL", "1m", "how often a node applies retention (message age and size, topic retention) to its message store", false, func(c *config) *string { return &c.RetentionEvery }},
	{"usage-interval", "AERIE_USAGE_INTERVAL", "10s", "how often a node reports its usage (traffic, connections, storage per instance and per topic) to the control plane", false, func(c *config) *string { return &c.UsageEvery }},
	{"node-api-url", "AERIE_NODE_API_URL", "", "URL the control plane reaches this node's API at (consumer groups); default http://<public-host>:<http port>", false, func(c *config) *string { return &c.NodeAPIURL }},
	{"sync-ready-bound", "AERIE_SYNC_READY_BOUND", "10s", "a node's /readyz fails once it has been out of sync with the control plane (watch stream down) for longer than this", false, func(c *config) *string { return &c.SyncReadyBound }},
	{"public-url", "AERIE_PUBLIC_URL", "", "URL users reach the console and API at, used in every emailed link; https makes console cookies Secure (default http://localhost:<http port>)", false, func(c *config) *string { return &c.PublicURL }},
	{"metrics-addr", "AERIE_METRICS_ADDR", "127.0.0.1:9090", "Prometheus /metrics listen address, apart from the public HTTP port (\"off\" disables it)", false, func(c *config) *string { return &c.MetricsAddr }},
	{"secret-key-file", "AERIE_SECRET_KEY_FILE", "", "file of key-encryption keys sealing private keys in the database, one base64 32-byte key per line, the current first (default <data-dir>/secret-key, generated on first start; AERIE_SECRET_KEY may hold the keys instead)", false, func(c *config) *string { return &c.SecretKeyFile }},
	{"base-domain", "AERIE_BASE_DOMAIN", "", "devices reaching <instance>.<base-domain> (TLS SNI, WebSocket Host) name that instance", false, func(c *config) *string { return &c.BaseDomain }},
	{"forward-ca-file", "AERIE_FORWARD_CA_FILE", "", "PEM file of extra CA certificates trusted for forwarding rules' webhook receivers (on top of the system's)", false, func(c *config) *string { return &c.ForwardCAFile }},
	{"forward-allow-private", "AERIE_FORWARD_ALLOW_PRIVATE", "false", "let forwarding rules' webhooks reach loopback, private and link-local addresses (off: a tenant cannot reach the node's own network)", false, func(c *config) *string { return &c.ForwardAllowPrivate }},
	{"cell", "AERIE_CELL", "", "the cell of data-plane nodes: node create puts the node in it (created when missing; default a new cell named after the node); dataplane states it with its heartbeat (refused if registered in another) and then stores messages, sessions and retained messages in the cell's replicated JetStream instead of a local RocksDB", false, func(c *config) *string { return &c.Cell }},
	{"cluster-addr", "AERIE_CLUSTER_ADDR", "127.0.0.1:6222", "cell: listen address for the other nodes' cluster routes", false, func(c *config) *string { return &c.ClusterAddr }},
	{"cluster-routes", "AERIE_CLUSTER_ROUTES", "", "cell: comma list of the other nodes' cluster addresses (host:port or nats://host:port)", false, func(c *config) *string { return &c.ClusterRoutes }},
	{"cluster-secret", "AERIE_CLUSTER_SECRET", "", "cell: shared secret every node of the cell presents on its routes and the cell's NATS client port", true, func(c *config) *string { return &c.ClusterSecret }},
	{"cell-replicas", "AERIE_CELL_REPLICAS", "3", "cell: replicas of every stream and bucket (capped by the cell's node count at start: 1 without --cluster-routes)", false, func(c *config) *string { return &c.CellReplicas }},
	{"cell-nats-addr", "AERIE_CELL_NATS_ADDR", "127.0.0.1:0", "cell: the embedded NATS server's client listener, for monitoring with the cluster secret (port 0: a random one; none without a secret)", false, func(c *config) *string { return &c.CellNATSAddr }},
	{"cell-node-ttl", "AERIE_CELL_NODE_TTL", "10s", "cell: a node silent for this long has left the cell; its sessions are taken over (disconnected, wills fired) by a survivor", false, func(c *config) *string { return &c.CellNodeTTL }},
	{"node-down-after", "AERIE_NODE_DOWN_AFTER", "15s", "a data-plane node with no heartbeat for this long is down (its cell degraded; no placement, requests or read-your-writes waits go to it); nodes report every 5 s", false, func(c *config) *string { return &c.NodeDownAfter }},
	{"max-connect-bytes", "AERIE_MAX_CONNECT_BYTES", "65536", "most bytes a connection may send before it is authenticated (its CONNECT; on WebSocket also the upgrade request and each message); a larger CONNECT is refused unread", false, func(c *config) *string { return &c.MaxConnectBytes }},
}

// subcommandFlags lists which flags each subcommand accepts.
var subcommandFlags = map[string][]string{
	"serve": {"http-addr", "mqtt-addr", "ws-addr", "mqtts-addr", "wss-addr", "tls-cert", "tls-key", "proxy-protocol", "data-dir", "database-url", "log-level", "log-format", "pg-bin-dir",
		"node-name", "public-host", "public-mqtt-port", "public-ws-port", "admin-token", "default-instance", "base-domain", "sync-ready-bound", "max-connect-bytes", "public-url", "metrics-addr", "secret-key-file", "retention-interval",
		"forward-ca-file", "forward-allow-private", "usage-interval", "node-down-after"},
	"controlplane": {"http-addr", "data-dir", "database-url", "log-level", "log-format", "pg-bin-dir", "admin-token", "public-url", "metrics-addr", "secret-key-file", "node-down-after"},
	"dataplane": {"http-addr", "mqtt-addr", "ws-addr", "mqtts-addr", "wss-addr", "tls-cert", "tls-key", "proxy-protocol", "data-dir", "log-level", "log-format", "control-plane", "node-token",
		"public-host", "public-mqtt-port", "public-ws-port", "default-instance", "base-domain", "sync-ready-bound", "max-connect-bytes", "metrics-addr", "retention-interval", "node-api-url",
		"forward-ca-file", "forward-allow-private", "usage-interval",
		"cell", "cluster-addr", "cluster-routes", "cluster-secret", "cell-replicas", "cell-nats-addr", "cell-node-ttl"},
	"migrate": {"data-dir", "database-url", "log-level", "log-format", "pg-bin-dir"},
	"node":    {"data-dir", "database-url", "log-level", "log-format", "pg-bin-dir", "cell", "node-down-after"},
	"cell":    {"data-dir", "database-url", "log-level", "log-format", "pg-bin-dir", "node-down-after"},
}

// publicURL returns --public-url checked (http or https, a host, no query or
// fragment; no trailing slash), or http://localhost:<port of the HTTP
// listener> when it is empty.
func publicURL(c *config, httpAddr net.Addr) (*url.URL, error) {
	raw := c.PublicURL
	if raw == "" {
		port := "8080"
		if ta, ok := httpAddr.(*net.TCPAddr); ok {
			port = strconv.Itoa(ta.Port)
		}
		raw = "http://localhost:" + port
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("%w: --public-url %q: want http(s)://host[:port][/path]", errUsage, raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	return u, nil
}

// errHelp means -h was given: usage was printed, exit 0.
var errHelp = errors.New("help requested")

// errUsage marks a command-line mistake (exit code 2).
var errUsage = errors.New("usage")

// parseConfig parses args for sub, with defaults from the environment.
func parseConfig(sub string, args []string, stderr io.Writer) (*config, []string, error) {
	c := &config{}
	fs := flag.NewFlagSet("aerie "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	names := subcommandFlags[sub]
	for _, f := range allFlags {
		if !contains(names, f.name) {
			continue
		}
		def, err := envValue(f.env, f.def, f.secret)
		if err != nil {
			return nil, nil, err
		}
		usage := fmt.Sprintf("%s (env %s", f.usage, f.env)
		if f.secret {
			usage += " or " + f.env + "_FILE"
		}
		usage += ")"
		fs.StringVar(f.dst(c), f.name, def, usage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil, errHelp
		}
		return nil, nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return c, fs.Args(), nil
}

// envValue reads name from the environment, or the file named by
// name_FILE for secrets, or returns def.
func envValue(name, def string, secret bool) (string, error) {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v, nil
	}
	if secret {
		if p := os.Getenv(name + "_FILE"); p != "" {
			b, err := os.ReadFile(p)
			if err != nil {
				return "", fmt.Errorf("read %s_FILE: %w", name, err)
			}
			return strings.TrimSpace(string(b)), nil
		}
	}
	return def, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// newLogger builds the process logger: text on a terminal, JSON otherwise.
// Every line goes through safelog.Redact: no call site, in the control plane
// or the node, can write a password, token, key, payload or packet.
func newLogger(c *config, w *os.File) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, c.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch c.LogFormat {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "auto", "":
		if term.IsTerminal(int(w.Fd())) {
			h = slog.NewTextHandler(w, opts)
		} else {
			h = slog.NewJSONHandler(w, opts)
		}
	default:
		return nil, fmt.Errorf("%w: --log-format %q: want auto, text or json", errUsage, c.LogFormat)
	}
	return slog.New(safelog.Redact(h)), nil
}

// nodeDownAfter is --node-down-after checked.
func nodeDownAfter(c *config) (time.Duration, error) {
	d, err := time.ParseDuration(c.NodeDownAfter)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%w: --node-down-after %q is not a positive duration (e.g. 15s)", errUsage, c.NodeDownAfter)
	}
	return d, nil
}

// flagsFirst moves the flags of args (each -name value or -name=value)
// before its other arguments, so `aerie node create NAME --cell C` parses
// like `aerie node create --cell C NAME`.
func flagsFirst(args []string) []string {
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			rest = append(rest, args[i+1:]...)
			return append(flags, rest...)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			flags = append(flags, a)
			if !strings.Contains(a, "=") && a != "-h" && a != "--help" && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		default:
			rest = append(rest, a)
		}
	}
	return append(flags, rest...)
}
