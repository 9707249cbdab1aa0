// Package mqttload measures MQTT brokers from benchmarks: it starts a
// Mosquitto baseline, opens many idle connections with a minimal raw MQTT
// client (so the load generator stays small), reads a process's resident
// memory, and measures connect rates and publish throughput with real
// clients. Aerie and Mosquitto are measured with the same code in one run.
package mqttload

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// RaiseFileLimit lifts RLIMIT_NOFILE to at least n (as far as allowed) so a
// benchmark can hold many sockets; child processes inherit it.
func RaiseFileLimit(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n {
		return nil
	}
	want := syscall.Rlimit{Cur: n, Max: max(lim.Max, n)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		// Not privileged: go as high as the hard limit.
		want = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
		if err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err2 != nil {
			return fmt.Errorf("raise open-file limit: %w", err)
		}
		if lim.Max < n {
			return fmt.Errorf("open-file limit is %d, need %d", lim.Max, n)
		}
	}
	return nil
}

// Mosquitto is a running mosquitto broker.
type Mosquitto struct {
	Addr string
	cmd  *exec.Cmd
	dir  string
}

// MosquittoOptions configure the baseline broker.
type MosquittoOptions struct {
	Persistence bool              // persistence true, autosave on every change
	Users       map[string]string // password auth when non-empty; anonymous otherwise
	MaxQueued   int               // max_queued_messages (0: mosquitto default)
}

// StartMosquitto starts mosquitto (Debian package) on a free loopback port.
func StartMosquitto(ctx context.Context, dir string, o MosquittoOptions) (*Mosquitto, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("mosquitto not installed (make deps installs it): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "listener %d 127.0.0.1\n", port)
	fmt.Fprintf(&conf, "log_dest file %s/mosquitto.log\nmax_connections -1\n", dir)
	if o.MaxQueued > 0 {
		fmt.Fprintf(&conf, "max_queued_messages %d\n", o.MaxQueued)
	}
	if o.Persistence {
		fmt.Fprintf(&conf, "persistence true\npersistence_location %s/\nautosave_interval 1\nautosave_on_changes true\n", dir)
	}
	if len(o.Users) > 0 {
		pw := filepath.Join(dir, "passwd")
		if err := os.WriteFile(pw, nil, 0o600); err != nil {
			return nil, err
		}
		for u, p := range o.Users {
			if out, err := exec.CommandContext(ctx, "mosquitto_passwd", "-b", pw, u, p).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("mosquitto_passwd: %v: %s", err, out)
			}
		}
		fmt.Fprintf(&conf, "allow_anonymous false\npassword_file %s\n", pw)
	} else {
		conf.WriteString("allow_anonymous true\n")
	}
	if os.Geteuid() == 0 {
		// Started as root, mosquitto would drop to the "mosquitto" user, which
		// cannot read a test's private temp dir. Aerie runs as root in the
		// same benchmark, so this keeps the comparison fair.
		conf.WriteString("user root\n")
	}
	cf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(cf, []byte(conf.String()), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-c", cf)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start mosquitto: %w", err)
	}
	m := &Mosquitto{Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, dir: dir}
	if err := WaitListening(ctx, m.Addr, 10*time.Second); err != nil {
		m.Stop()
		log, _ := os.ReadFile(filepath.Join(dir, "mosquitto.log"))
		return nil, fmt.Errorf("%w: %s", err, log)
	}
	return m, nil
}

// Pid is the broker's process id.
func (m *Mosquitto) Pid() int { return m.cmd.Process.Pid }

// Stop ends the broker.
func (m *Mosquitto) Stop() {
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// WaitListening waits until addr accepts TCP connections.
func WaitListening(ctx context.Context, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not listening after %s", addr, within)
}

// RSS returns the resident set size of pid in bytes.
func RSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "VmRSS:") {
			fields := strings.Fields(sc.Text())
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("VmRSS not found")
}

// ConnectPacket encodes an MQTT 3.1.1 CONNECT.
func ConnectPacket(clientID, username, password string, keepalive uint16) []byte {
	var v []byte
	v = appendString(v, "MQTT")
	flags := byte(0x02) // clean session
	if username != "" {
		flags |= 0x80
	}
	if password != "" {
		flags |= 0x40
	}
	v = append(v, 4, flags, byte(keepalive>>8), byte(keepalive))
	v = appendString(v, clientID)
	if username != "" {
		v = appendString(v, username)
	}
	if password != "" {
		v = appendString(v, password)
	}
	return append(append([]byte{0x10}, remainingLength(len(v))...), v...)
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func remainingLength(n int) []byte {
	var out []byte
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		out = append(out, d)
		if n == 0 {
			return out
		}
	}
}

// ErrRefused is returned when the broker answers CONNACK with a non-zero code.
var ErrRefused = errors.New("connection refused")

// Connect opens a raw MQTT 3.1.1 connection and waits for a successful
// CONNACK.
func Connect(ctx context.Context, addr, clientID, username, password string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(ConnectPacket(clientID, username, password, 0)); err != nil {
		c.Close()
		return nil, err
	}
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("read CONNACK: %w", err)
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		c.Close()
		return nil, fmt.Errorf("%w: CONNACK % x", ErrRefused, ack)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// Idle holds open connections.
type Idle struct{ conns []net.Conn }

// Close closes every connection.
func (i *Idle) Close() {
	for _, c := range i.conns {
		c.Close()
	}
}

// OpenIdle opens n connections (keepalive 0, so they stay idle) with up to
// parallel dials at once. userFor names the credentials of connection k.
func OpenIdle(ctx context.Context, addr string, n, parallel int, userFor func(k int) (user, pass string)) (*Idle, error) {
	idle := &Idle{conns: make([]net.Conn, n)}
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1) - 1)
				if k >= n {
					return
				}
				u, p := "", ""
				if userFor != nil {
					u, p = userFor(k)
				}
				c, err := Connect(ctx, addr, fmt.Sprintf("idle-%d", k), u, p)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", k, err)
					}
					mu.Unlock()
					return
				}
				idle.conns[k] = c
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		for _, c := range idle.conns {
			if c != nil {
				c.Close()
			}
		}
		return nil, firstErr
	}
	return idle, nil
}

// ConnectRate opens and closes n authenticated connections with the given
// parallelism and returns connects per second.
func ConnectRate(ctx context.Context, addr string, n, parallel int, userFor func(k int) (string, string)) (float64, error) {
	start := time.Now()
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1) - 1)
				if k >= n {
					return
				}
				u, p := userFor(k)
				c, err := Connect(ctx, addr, fmt.Sprintf("rate-%d", k), u, p)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				_, _ = c.Write([]byte{0xE0, 0x00}) // DISCONNECT
				c.Close()
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return 0, fmt.Errorf("%d of %d connects failed: %v", f, n, firstErr.Load())
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
