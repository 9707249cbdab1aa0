package gateway

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/pires/go-proxyproto"
)

// tcpListener is a TCP (optionally TLS) MQTT listener that binds in Init, so
// a port in use is reported at start-up, and hands connections to mochi with
// a deadline for the CONNECT packet already set.
type tcpListener struct {
	id         string
	addr       string
	tlsConfig  *tls.Config
	proxy      bool // a PROXY protocol v1/v2 header is required first
	preConnect time.Duration
	ln         net.Listener
	log        *slog.Logger
	end        atomic.Bool
	wg         sync.WaitGroup
}

func (l *tcpListener) ID() string      { return l.id }
func (l *tcpListener) Address() string { return l.boundAddr() }
func (l *tcpListener) Protocol() string {
	return map[bool]string{true: "mqtts", false: "mqtt"}[l.tlsConfig != nil]
}

func (l *tcpListener) boundAddr() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

func (l *tcpListener) Init(log *slog.Logger) error {
	l.log = log
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	if l.proxy {
		ln = proxyListener(ln, l.preConnect)
	}
	if l.tlsConfig != nil {
		ln = tls.NewListener(ln, l.tlsConfig)
	}
	l.ln = ln
	return nil
}

func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if l.end.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			l.log.Warn("accept failed", "listener", l.id, "error", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		// mochi sets no deadline before CONNECT; it replaces this one with
		// the keepalive deadline once CONNECT has been read.
		_ = conn.SetDeadline(time.Now().Add(l.preConnect))
		if tc, ok := conn.(*tls.Conn); ok {
			conn = sniConn{tc}
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			if err := establish(l.id, conn); err != nil {
				l.log.Debug("connection ended", "listener", l.id, "remote", conn.RemoteAddr().String(), "error", err)
			}
		}()
	}
}

func (l *tcpListener) Close(closeClients listeners.CloseFn) {
	if l.end.CompareAndSwap(false, true) && l.ln != nil {
		_ = l.ln.Close()
	}
	closeClients(l.id)
}

// wsListener serves MQTT over WebSocket at /mqtt (subprotocol "mqtt").
type wsListener struct {
	id         string
	addr       string
	path       string
	tlsConfig  *tls.Config
	proxy      bool // a PROXY protocol v1/v2 header is required first
	preConnect time.Duration
	maxPreAuth uint32 // bound on the upgrade request and on messages until authenticated
	ln         net.Listener
	srv        *http.Server
	log        *slog.Logger
	establish  listeners.EstablishFn
	upgrader   websocket.Upgrader
	end        atomic.Bool
}

func (l *wsListener) ID() string { return l.id }
func (l *wsListener) Protocol() string {
	return map[bool]string{true: "wss", false: "ws"}[l.tlsConfig != nil]
}
func (l *wsListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

func (l *wsListener) Init(log *slog.Logger) error {
	l.log = log
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	if l.proxy {
		ln = proxyListener(ln, l.preConnect)
	}
	if l.tlsConfig != nil {
		ln = tls.NewListener(ln, l.tlsConfig)
	}
	l.ln = ln
	l.upgrader = websocket.Upgrader{
		Subprotocols:    []string{"mqtt", "mqttv3.1"},
		ReadBufferSize:  1024,
		WriteBufferSize: 1024,
		// Devices and browser apps connect from any origin; authentication is
		// the MQTT CONNECT, not cookies, so cross-origin use is safe.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	mux := http.NewServeMux()
	mux.HandleFunc(l.path, l.handle)
	// The upgrade request comes before authentication: it may not cost
	// more than a CONNECT (net/http's default allows 1 MiB of headers).
	l.srv = &http.Server{Handler: mux, ReadHeaderTimeout: l.preConnect, MaxHeaderBytes: int(l.maxPreAuth)}
	return nil
}

func (l *wsListener) handle(w http.ResponseWriter, r *http.Request) {
	c, err := l.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	// Until the device is authenticated a WebSocket message may be no
	// larger than a CONNECT: a longer frame is refused from its header
	// (close 1009). packetSizeHook lifts the bound after CONNACK.
	c.SetReadLimit(int64(l.maxPreAuth))
	host := r.Host
	if r.TLS != nil && r.TLS.ServerName != "" {
		host = r.TLS.ServerName // TLS SNI names the instance first
	}
	conn := &wsConn{Conn: c.UnderlyingConn(), c: c, host: host}
	_ = conn.SetDeadline(time.Now().Add(l.preConnect))
	if err := l.establish(l.id, conn); err != nil {
		l.log.Debug("connection ended", "listener", l.id, "remote", r.RemoteAddr, "error", err)
	}
}

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.establish = establish
	if err := l.srv.Serve(l.ln); err != nil && !l.end.Load() && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("websocket listener stopped", "listener", l.id, "error", err)
	}
}

func (l *wsListener) Close(closeClients listeners.CloseFn) {
	if l.end.CompareAndSwap(false, true) && l.srv != nil {
		_ = l.srv.Close()
	}
	closeClients(l.id)
}

// wsConn adapts a WebSocket connection to the byte stream mochi reads.
type wsConn struct {
	net.Conn
	c    *websocket.Conn
	r    io.Reader
	wm   sync.Mutex
	host string // the HTTP Host the device connected to
}

// ServerName is the host name the device used (it can name the instance).
func (ws *wsConn) ServerName() string { return ws.host }

var errNotBinary = errors.New("websocket: MQTT needs binary frames")

func (ws *wsConn) Read(p []byte) (int, error) {
	for {
		if ws.r == nil {
			op, r, err := ws.c.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errNotBinary
			}
			ws.r = r
		}
		n, err := ws.r.Read(p)
		if errors.Is(err, io.EOF) {
			ws.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (ws *wsConn) Write(p []byte) (int, error) {
	ws.wm.Lock()
	defer ws.wm.Unlock()
	if err := ws.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (ws *wsConn) Close() error { return ws.Conn.Close() }

// SetReadLimit bounds the size of a WebSocket message (0: no bound). Only
// the connection's read goroutine calls it.
func (ws *wsConn) SetReadLimit(n int64) { ws.c.SetReadLimit(n) }

// proxyListener requires a PROXY protocol (v1 or v2) header on every
// connection, as a load balancer in front of the node sends it; the
// device's own address then becomes the connection's remote address.
func proxyListener(ln net.Listener, timeout time.Duration) net.Listener {
	return &proxyproto.Listener{Listener: ln, ReadHeaderTimeout: timeout,
		ConnPolicy: func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) { return proxyproto.REQUIRE, nil }}
}
