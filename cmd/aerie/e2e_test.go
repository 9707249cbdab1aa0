package main_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aeriemq/aerie/internal/pgtest"
)

var aerieBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "aerie-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	aerieBin = filepath.Join(dir, "aerie")
	build := exec.Command("go", "build", "-o", aerieBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build aerie:", err)
		os.Exit(1)
	}
	code := pgtest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one aerie subprocess.
type proc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ports are a free HTTP, MQTT and WS port on loopback.
type ports struct{ http, mqtt, ws string }

func freePorts(t testing.TB) ports {
	t.Helper()
	addrs := freeAddrN(t, 3)
	return ports{http: addrs[0], mqtt: addrs[1], ws: addrs[2]}
}

func (p ports) args() []string {
	return []string{"--http-addr", p.http, "--mqtt-addr", p.mqtt, "--ws-addr", p.ws, "--mqtts-addr", "127.0.0.1:0", "--wss-addr", "127.0.0.1:0"}
}

// cleanEnv is the test's environment without DATABASE_URL or AERIE_*, and
// with the metrics listener on a free loopback port (its default, 9090,
// would collide between tests running at once).
func cleanEnv(extra ...string) []string {
	env := []string{"AERIE_METRICS_ADDR=127.0.0.1:0"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DATABASE_URL") || strings.HasPrefix(kv, "AERIE_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

func start(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(aerieBin, args...)
	p.cmd.Env = env
	p.cmd.Stdout = p.stderr
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("aerie %v output:\n%s", args, p.stderr.String())
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t testing.TB, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("aerie did not exit within %s", within)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("wait: %v", p.err)
	}
	return 0
}

func waitReady(t testing.TB, p *proc, httpAddr string, within time.Duration) time.Duration {
	t.Helper()
	startAt := time.Now()
	client := &http.Client{Timeout: 2 * time.Second}
	for time.Since(startAt) < within {
		select {
		case <-p.done:
			t.Fatalf("aerie exited before ready: %v", p.err)
		default:
		}
		resp, err := client.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(startAt)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("/readyz not 200 within %s", within)
	return 0
}

// postgresPids lists running postgres processes whose command line names dir.
func postgresPids(dir string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmdline, "postgres") && strings.Contains(cmdline, dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func newDataDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	// The private cluster runs as the postgres user when tests run as root;
	// t.TempDir is 0700, so open it up as a checkout directory would be.
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(d), 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(d, "data")
}

// TestServeLifecycle is the foundation's end-to-end test: a fresh start
// with a private cluster, MQTT refused while no credentials exist, a clean
// SIGTERM, a restart that reuses the cluster, and a restart after kill -9.
func TestServeLifecycle(t *testing.T) {
	dataDir := newDataDir(t)
	pgDir := filepath.Join(dataDir, "pg")
	env := cleanEnv()

	t.Run("first start reaches ready", func(t *testing.T) {
		pp := freePorts(t)
		p := start(t, env, append([]string{"serve", "--data-dir", dataDir}, pp.args()...)...)
		took := waitReady(t, p, pp.http, 60*time.Second)
		t.Logf("fresh data dir to /readyz 200 in %s", took)
		if !strings.Contains(p.stderr.String(), "initialising private PostgreSQL cluster") {
			t.Errorf("first start did not initialise a cluster")
		}
		if _, err := os.Stat(filepath.Join(pgDir, "data", "PG_VERSION")); err != nil {
			t.Errorf("cluster not under <data-dir>/pg: %v", err)
		}
		if _, err := os.Stat(filepath.Join(pgDir, ".s.PGSQL.5432")); err != nil {
			t.Errorf("unix socket not in the cluster dir: %v", err)
		}

		resp, err := http.Get("http://" + pp.http + "/healthz")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("/healthz: %v %v", resp, err)
		}
		resp.Body.Close()

		t.Run("mqtt 3.1.1 connect is refused as not authorised", func(t *testing.T) {
			opts := mqtt3.NewClientOptions().AddBroker("tcp://" + pp.mqtt).SetClientID("dev-1").
				SetUsername("someone").SetPassword("guess").SetConnectRetry(false).SetAutoReconnect(false).
				SetConnectTimeout(5 * time.Second)
			c := mqtt3.NewClient(opts)
			tok := c.Connect()
			if !tok.WaitTimeout(10 * time.Second) {
				t.Fatal("connect did not finish")
			}
			if tok.Error() == nil {
				c.Disconnect(0)
				t.Fatal("connect succeeded; want refused")
			}
			if !strings.Contains(tok.Error().Error(), "not Authorized") {
				t.Fatalf("connect error %q; want CONNACK 0x05 not authorised", tok.Error())
			}
		})

		t.Run("mqtt 5 connect is refused as not authorised", func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", pp.mqtt, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			c := paho.NewClient(paho.ClientConfig{Conn: conn})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ca, err := c.Connect(ctx, &paho.Connect{ClientID: "dev-1", CleanStart: true, KeepAlive: 30,
				UsernameFlag: true, Username: "someone", PasswordFlag: true, Password: []byte("guess")})
			if err == nil {
				t.Fatal("connect succeeded; want refused")
			}
			if ca == nil || ca.ReasonCode != 0x87 {
				t.Fatalf("connack %+v err %v; want reason 0x87 not authorised", ca, err)
			}
		})

		t.Run("a socket that sends no CONNECT is closed", func(t *testing.T) {
			conn, err := net.Dial("tcp", pp.mqtt)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			began := time.Now()
			_, err = conn.Read(make([]byte, 1))
			if err == nil {
				t.Fatal("read data from a connection that sent nothing")
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("server kept an idle pre-CONNECT socket open for %s", time.Since(began))
			}
			if d := time.Since(began); d < 9*time.Second || d > 15*time.Second {
				t.Fatalf("closed after %s; want about 10 s", d)
			}
		})

		p.cmd.Process.Signal(syscall.SIGTERM)
		began := time.Now()
		if code := p.wait(t, 10*time.Second); code != 0 {
			t.Fatalf("exit code %d after SIGTERM", code)
		}
		t.Logf("SIGTERM to exit: %s", time.Since(began))
		if pids := postgresPids(pgDir); len(pids) > 0 {
			t.Fatalf("postgres processes left behind: %v", pids)
		}
	})

	t.Run("second start reuses the cluster", func(t *testing.T) {
		pp := freePorts(t)
		p := start(t, env, append([]string{"serve", "--data-dir", dataDir}, pp.args()...)...)
		waitReady(t, p, pp.http, 60*time.Second)
		if strings.Contains(p.stderr.String(), "initialising private PostgreSQL cluster") {
			t.Errorf("second start initialised a new cluster")
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(t, 10*time.Second); code != 0 {
			t.Fatalf("exit code %d", code)
		}
	})

	t.Run("start after kill -9 with a stale pid file", func(t *testing.T) {
		pp := freePorts(t)
		p := start(t, env, append([]string{"serve", "--data-dir", dataDir}, pp.args()...)...)
		waitReady(t, p, pp.http, 60*time.Second)
		pidFile := filepath.Join(pgDir, "data", "postmaster.pid")
		b, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		pgPid, _ := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
		// A machine crash: the postmaster dies without cleaning up, then aerie.
		_ = syscall.Kill(pgPid, syscall.SIGKILL)
		_ = p.cmd.Process.Kill()
		p.wait(t, 10*time.Second)
		if _, err := os.Stat(pidFile); err != nil {
			t.Fatalf("expected a stale postmaster.pid after kill -9: %v", err)
		}

		pp = freePorts(t)
		p = start(t, env, append([]string{"serve", "--data-dir", dataDir}, pp.args()...)...)
		waitReady(t, p, pp.http, 60*time.Second)
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(t, 10*time.Second); code != 0 {
			t.Fatalf("exit code %d", code)
		}
		if pids := postgresPids(pgDir); len(pids) > 0 {
			t.Fatalf("postgres processes left behind: %v", pids)
		}
	})

	t.Run("kill -9 of aerie alone leaves no postgres behind", func(t *testing.T) {
		pp := freePorts(t)
		p := start(t, env, append([]string{"serve", "--data-dir", dataDir}, pp.args()...)...)
		waitReady(t, p, pp.http, 60*time.Second)
		_ = p.cmd.Process.Kill()
		p.wait(t, 10*time.Second)
		deadline := time.Now().Add(10 * time.Second)
		for len(postgresPids(pgDir)) > 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if pids := postgresPids(pgDir); len(pids) > 0 {
			t.Fatalf("postgres orphaned after kill -9 of aerie: %v", pids)
		}
	})
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestStartupFailures checks that each start-up failure ends the process
// with a non-zero code and one clear line naming the problem.
func TestStartupFailures(t *testing.T) {
	type tc struct {
		name     string
		setup    func(t *testing.T) (env []string, args []string)
		wantCode int
		want     string
	}
	cases := []tc{
		{
			name: "http port in use",
			setup: func(t *testing.T) ([]string, []string) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
				pp := freePorts(t)
				pp.http = ln.Addr().String()
				return cleanEnv(), append([]string{"serve", "--data-dir", newDataDir(t)}, pp.args()...)
			},
			wantCode: 1, want: "address already in use",
		},
		{
			name: "mqtt port in use",
			setup: func(t *testing.T) ([]string, []string) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
				pp := freePorts(t)
				pp.mqtt = ln.Addr().String()
				return cleanEnv(), append([]string{"serve", "--data-dir", newDataDir(t)}, pp.args()...)
			},
			wantCode: 1, want: "mqtt listener on 127.0.0.1",
		},
		{
			name: "unwritable data dir",
			setup: func(t *testing.T) ([]string, []string) {
				f := filepath.Join(t.TempDir(), "a-file")
				if err := os.WriteFile(f, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				return cleanEnv(), append([]string{"serve", "--data-dir", filepath.Join(f, "data")}, freePorts(t).args()...)
			},
			wantCode: 1, want: "data dir",
		},
		{
			name: "no PostgreSQL binaries",
			setup: func(t *testing.T) ([]string, []string) {
				empty := t.TempDir()
				return cleanEnv("PATH=" + empty), append([]string{"serve", "--data-dir", newDataDir(t), "--pg-bin-dir", empty}, freePorts(t).args()...)
			},
			wantCode: 2, want: "apt-get install postgresql",
		},
		{
			name: "schema newer than the binary",
			setup: func(t *testing.T) ([]string, []string) {
				db := pgtest.New(t)
				if _, err := db.Pool.Exec(context.Background(),
					"INSERT INTO goose_db_version (version_id, is_applied) VALUES (99999, true)"); err != nil {
					t.Fatal(err)
				}
				return cleanEnv("DATABASE_URL=" + db.DSN), append([]string{"serve", "--data-dir", newDataDir(t)}, freePorts(t).args()...)
			},
			wantCode: 1, want: "database schema is newer than this binary",
		},
		{
			name: "unknown PROXY protocol listener",
			setup: func(t *testing.T) ([]string, []string) {
				return cleanEnv(), append([]string{"serve", "--data-dir", newDataDir(t), "--proxy-protocol", "mqtt,smtp"}, freePorts(t).args()...)
			},
			wantCode: 2, want: `unknown listener "smtp"`,
		},
		{
			name: "cell name that cannot name a cluster",
			setup: func(t *testing.T) ([]string, []string) {
				return cleanEnv(), cellNodeArgs(t, "--cell", "a.b")
			},
			wantCode: 2, want: "--cell",
		},
		{
			name: "cell NATS port without a secret",
			setup: func(t *testing.T) ([]string, []string) {
				return cleanEnv(), cellNodeArgs(t, "--cell", "solo", "--cell-nats-addr", freeAddrN(t, 1)[0])
			},
			wantCode: 2, want: "--cell-nats-addr",
		},
		{
			name: "cell routes without a secret",
			setup: func(t *testing.T) ([]string, []string) {
				return cleanEnv(), cellNodeArgs(t, "--cell", "c9", "--cluster-routes", freeAddrN(t, 1)[0])
			},
			wantCode: 2, want: "needs --cluster-secret",
		},
		{
			name: "unknown log level",
			setup: func(t *testing.T) ([]string, []string) {
				return cleanEnv(), []string{"serve", "--log-level", "loud"}
			},
			wantCode: 2, want: "--log-level",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env, args := c.setup(t)
			p := start(t, env, args...)
			code := p.wait(t, 30*time.Second)
			out := p.stderr.String()
			if code != c.wantCode {
				t.Errorf("exit code %d, want %d", code, c.wantCode)
			}
			line := lastLine(out)
			if !strings.HasPrefix(line, "aerie: ") || !strings.Contains(line, c.want) {
				t.Errorf("last line %q; want an 'aerie: …' line containing %q", line, c.want)
			}
			if n := strings.Count(out, "\naerie: ") + boolInt(strings.HasPrefix(out, "aerie: ")); n != 1 {
				t.Errorf("%d error lines, want exactly one:\n%s", n, out)
			}
		})
	}
}

// cellNodeArgs starts a data-plane node with cell flags (the check comes
// before the node reaches its control plane).
func cellNodeArgs(t *testing.T, extra ...string) []string {
	args := append([]string{"dataplane", "--data-dir", newDataDir(t), "--control-plane", "http://127.0.0.1:9", "--node-token", "aen_n-test_secret"}, freePorts(t).args()...)
	return append(args, extra...)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestMigrateCommand runs `aerie migrate up` and `status` against a database.
func TestMigrateCommand(t *testing.T) {
	dsn := pgtest.EmptyDSN(t)
	run := func(args ...string) (string, int) {
		p := start(t, cleanEnv("DATABASE_URL="+dsn), args...)
		code := p.wait(t, 30*time.Second)
		return p.stderr.String(), code
	}
	out, code := run("migrate", "status")
	if code != 0 || !strings.Contains(out, "pending") {
		t.Fatalf("status before up: code %d\n%s", code, out)
	}
	out, code = run("migrate", "up")
	if code != 0 || !strings.Contains(out, "schema at version") {
		t.Fatalf("up: code %d\n%s", code, out)
	}
	out, code = run("migrate", "status")
	if code != 0 || strings.Contains(out, "pending") || !strings.Contains(out, "applied") {
		t.Fatalf("status after up: code %d\n%s", code, out)
	}
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM settings").Scan(&n); err != nil {
		t.Fatalf("migrated schema missing: %v", err)
	}
	out, code = run("version")
	if code != 0 || !strings.HasPrefix(out, "aerie ") {
		t.Fatalf("version: %d %q", code, out)
	}
}

// TestSecretsFromFiles shows DATABASE_URL can come from DATABASE_URL_FILE.
func TestSecretsFromFiles(t *testing.T) {
	dsn := pgtest.EmptyDSN(t)
	f := filepath.Join(t.TempDir(), "dburl")
	if err := os.WriteFile(f, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, cleanEnv("DATABASE_URL_FILE="+f), "migrate", "up")
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("migrate up with DATABASE_URL_FILE: code %d\n%s", code, p.stderr.String())
	}
	u, _ := url.Parse(dsn)
	if strings.Contains(p.stderr.String(), u.String()) {
		t.Errorf("database URL printed to the log")
	}
}
