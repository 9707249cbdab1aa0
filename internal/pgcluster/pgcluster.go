// Package pgcluster runs a private PostgreSQL cluster from the system's
// PostgreSQL binaries: initdb on first start, a unix socket in the cluster
// directory, no TCP port, reused on the next start and stopped on exit.
//
// When the current process is root the cluster is initialised and run as the
// "postgres" OS user, because initdb and postgres refuse to run as root.
package pgcluster

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoBinaries is returned when no PostgreSQL server binaries can be found.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries found (initdb, postgres); install them with: apt-get install postgresql")

// Options configure a private cluster.
type Options struct {
	// Dir is where the cluster lives (the PGDATA directory is Dir/data and
	// the unix socket is in Dir).
	Dir string
	// BinDir overrides the binary search (env AERIE_PG_BINDIR).
	BinDir string
	// User is the database superuser created by initdb. Default "aerie".
	User string
	// NoSync makes initdb and the server skip fsync (tests only).
	NoSync bool
	// Log receives progress messages. Default slog.Default().
	Log *slog.Logger
}

// Cluster is a running private PostgreSQL server.
type Cluster struct {
	dir     string // cluster root: data/ and the socket live here
	dataDir string
	user    string
	log     *slog.Logger
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	stopMu  sync.Mutex
	stopped bool
}

// FindBinDir locates the directory holding initdb and postgres: the override
// if given, then `pg_config --bindir`, then /usr/lib/postgresql/*/bin (the
// newest version first), then $PATH.
func FindBinDir(override string) (string, error) {
	has := func(dir string) bool {
		for _, b := range []string{"initdb", "postgres"} {
			fi, err := os.Stat(filepath.Join(dir, b))
			if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				return false
			}
		}
		return true
	}
	if override != "" {
		if has(override) {
			return override, nil
		}
		return "", fmt.Errorf("%w (looked in %s)", ErrNoBinaries, override)
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); d != "" && has(d) {
			return d, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(matches, func(i, j int) bool { return versionOf(matches[i]) > versionOf(matches[j]) })
	for _, d := range matches {
		if has(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && has(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
	}
	return "", ErrNoBinaries
}

func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// runAs describes the OS identity the cluster runs under.
type runAs struct {
	cred *syscall.Credential // nil: the current user
	uid  int
	gid  int
}

func identity() (runAs, error) {
	if os.Geteuid() != 0 {
		return runAs{uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return runAs{}, fmt.Errorf("running as root needs the 'postgres' OS user to run the private cluster (install the postgresql package): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return runAs{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid: uid, gid: gid}, nil
}

// reachable reports whether the identity can traverse and write dir.
func (r runAs) reachable(dir string) bool {
	if r.cred == nil {
		return true
	}
	cmd := exec.Command("/bin/sh", "-c", `test -d "$1" && test -x "$1" && test -w "$1"`, "sh", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: r.cred}
	return cmd.Run() == nil
}

// ResolveDir returns the directory the cluster for want will actually use.
// When running as root and the postgres user cannot reach want (a checkout
// under a 0700 home directory, say), it falls back to a postgres-owned
// directory under the system temp dir keyed by want's absolute path.
func ResolveDir(want string) (string, bool, error) {
	abs, err := filepath.Abs(want)
	if err != nil {
		return "", false, fmt.Errorf("cluster dir: %w", err)
	}
	id, err := identity()
	if err != nil {
		return "", false, err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", false, fmt.Errorf("create cluster dir %s: %w", abs, err)
	}
	if id.cred != nil {
		if err := os.Chown(abs, id.uid, id.gid); err != nil {
			return "", false, fmt.Errorf("chown cluster dir %s: %w", abs, err)
		}
	}
	// A unix socket path is limited to 107 bytes; a deep checkout cannot hold
	// the socket, so it falls back like an unreachable one.
	if id.reachable(abs) && len(abs)+len("/.s.PGSQL.5432") < 100 {
		return abs, false, nil
	}
	sum := sha256.Sum256([]byte(abs))
	alt := filepath.Join(os.TempDir(), "aerie-pg-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(alt, 0o700); err != nil {
		return "", false, fmt.Errorf("create fallback cluster dir %s: %w", alt, err)
	}
	if err := os.Chown(alt, id.uid, id.gid); err != nil {
		return "", false, fmt.Errorf("chown fallback cluster dir %s: %w", alt, err)
	}
	if !id.reachable(alt) {
		return "", false, fmt.Errorf("neither %s nor %s is reachable by the postgres user", abs, alt)
	}
	return alt, true, nil
}

// Start initialises the cluster if needed and starts the server, waiting
// until it accepts connections. The server is a child of this process and
// receives SIGINT (fast shutdown) if this process dies.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	if o.User == "" {
		o.User = "aerie"
	}
	binDir, err := FindBinDir(o.BinDir)
	if err != nil {
		return nil, err
	}
	dir, fellBack, err := ResolveDir(o.Dir)
	if err != nil {
		return nil, err
	}
	if fellBack {
		log.Warn("postgres user cannot reach the data dir; using a postgres-owned directory instead", "wanted", o.Dir, "using", dir)
	}
	id, err := identity()
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, dataDir: filepath.Join(dir, "data"), user: o.User, log: log, done: make(chan struct{})}

	if _, err := os.Stat(filepath.Join(c.dataDir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		log.Info("initialising private PostgreSQL cluster", "dir", c.dataDir)
		_ = os.RemoveAll(c.dataDir) // a half-finished initdb leaves a partial dir
		args := []string{"-D", c.dataDir, "-U", o.User, "--auth=trust", "-E", "UTF8", "--locale=C"}
		if o.NoSync {
			args = append(args, "--no-sync")
		}
		cmd := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: id.cred}
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("initdb: %w: %s", err, lastLines(string(out), 5))
		}
	} else if err != nil {
		return nil, fmt.Errorf("stat cluster: %w", err)
	}

	if err := c.clearStalePid(ctx); err != nil {
		return nil, err
	}

	args := []string{"-D", c.dataDir, "-k", dir, "-c", "listen_addresses=", "-c", "max_connections=200"}
	if o.NoSync {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	logPath := filepath.Join(dir, "postgres.log")
	for attempt := 0; ; attempt++ {
		err := c.startServer(ctx, binDir, args, logPath, id)
		if err == nil {
			break
		}
		// Backends of a crashed postmaster exit within moments of noticing;
		// until then postgres refuses to reuse their shared memory.
		if attempt < 20 && strings.Contains(err.Error(), "still in use") {
			c.done = make(chan struct{})
			time.Sleep(500 * time.Millisecond)
			continue
		}
		return nil, err
	}
	log.Info("private PostgreSQL cluster running", "dir", dir, "pid", c.cmd.Process.Pid)
	return c, nil
}

// startServer starts postgres as a child and waits until it accepts
// connections.
func (c *Cluster) startServer(ctx context.Context, binDir string, args []string, logPath string, id runAs) error {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open postgres log: %w", err)
	}
	cmd := exec.Command(filepath.Join(binDir, "postgres"), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = c.dir
	// Pdeathsig: if this process dies (even by SIGKILL) the kernel asks
	// postgres for a fast shutdown, so no orphan keeps the cluster.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: id.cred, Pdeathsig: syscall.SIGINT, Setpgid: true}
	// The kernel sends Pdeathsig when the *thread* that forked the child
	// exits, so the fork happens on a locked thread that lives as long as
	// postgres does.
	done := c.done
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.waitErr = cmd.Wait()
		logf.Close()
		close(done)
	}()
	if err := <-started; err != nil {
		logf.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	c.cmd = cmd
	deadline := time.Now().Add(60 * time.Second)
	sock := filepath.Join(c.dir, ".s.PGSQL.5432")
	for {
		if _, err := os.Stat(sock); err == nil && c.acceptsConnections(ctx, binDir) {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("postgres exited during start-up (%v): %s", c.waitErr, tailFile(logPath, 3))
		case <-ctx.Done():
			c.Stop()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.Stop()
			return fmt.Errorf("postgres did not accept connections within 60s: %s", tailFile(logPath, 3))
		}
	}
}

func (c *Cluster) acceptsConnections(ctx context.Context, binDir string) bool {
	isready := filepath.Join(binDir, "pg_isready")
	if _, err := os.Stat(isready); err != nil {
		return true // the socket exists; let the first real connection tell
	}
	cmd := exec.CommandContext(ctx, isready, "-q", "-h", c.dir, "-U", c.user, "-d", "postgres")
	return cmd.Run() == nil
}

// clearStalePid handles a postmaster.pid left behind by a crash. If the pid
// in it is no longer a postgres server the file is removed; if a server for
// this data dir is still running (an orphan of a killed aerie process, which
// holds no lock any more) it is shut down first.
func (c *Cluster) clearStalePid(ctx context.Context) error {
	pidFile := filepath.Join(c.dataDir, "postmaster.pid")
	f, err := os.Open(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", pidFile, err)
	}
	sc := bufio.NewScanner(f)
	sc.Scan()
	pid, _ := strconv.Atoi(strings.TrimSpace(sc.Text()))
	f.Close()
	switch {
	case pid > 0 && isPostgres(pid) && c.ownsDataDir(pid):
		c.log.Warn("stopping an orphaned postgres server left by a previous run", "pid", pid)
		_ = syscall.Kill(pid, syscall.SIGINT)
		for i := 0; i < 200 && processAlive(pid); i++ {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		if processAlive(pid) {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
			time.Sleep(500 * time.Millisecond)
		}
		if processAlive(pid) {
			return fmt.Errorf("an earlier postgres server (pid %d) for %s is still running", pid, c.dataDir)
		}
	default:
		// The postmaster is gone (dead, a zombie nobody reaped, or its pid
		// reused by another process); postgres would refuse to start while
		// the pid "exists", so wait for its old backends to exit, then drop
		// the file.
		for i := 0; i < 200 && c.backendsAlive(); i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if c.backendsAlive() {
			return fmt.Errorf("processes of a crashed postgres still use %s", c.dataDir)
		}
		c.log.Warn("removing stale postmaster.pid left by a crash", "pid", pid)
		for _, f := range []string{pidFile, filepath.Join(c.dir, ".s.PGSQL.5432.lock"), filepath.Join(c.dir, ".s.PGSQL.5432")} {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove stale %s: %w", filepath.Base(f), err)
			}
		}
	}
	return nil
}

func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	// A zombie has exited; only its parent has not reaped it yet.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// ownsDataDir reports whether process pid works in this cluster's data dir
// (postgres processes chdir to it).
func (c *Cluster) ownsDataDir(pid int) bool {
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	return err == nil && cwd == c.dataDir
}

// backendsAlive reports whether any live process still works in the data
// dir (backends of a crashed postmaster exit once they notice).
func (c *Cluster) backendsAlive() bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if c.ownsDataDir(pid) && processAlive(pid) {
			return true
		}
	}
	return false
}

func isPostgres(pid int) bool {
	if !processAlive(pid) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	return len(args) > 0 && (filepath.Base(args[0]) == "postgres" || strings.HasPrefix(args[0], "postgres:"))
}

// DSN returns a connection string for database db over the unix socket.
func (c *Cluster) DSN(db string) string {
	q := url.Values{}
	q.Set("host", c.dir)
	q.Set("sslmode", "disable")
	return (&url.URL{Scheme: "postgres", User: url.User(c.user), Path: "/" + db, RawQuery: q.Encode()}).String()
}

// Dir is the cluster root (socket directory).
func (c *Cluster) Dir() string { return c.dir }

// Pid is the postmaster's process id.
func (c *Cluster) Pid() int { return c.cmd.Process.Pid }

// Done is closed when the server process has exited.
func (c *Cluster) Done() <-chan struct{} { return c.done }

// Stop shuts the server down (fast shutdown, then immediate after 10 s) and
// waits for it to exit. It is safe to call more than once.
func (c *Cluster) Stop() error {
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
	c.log.Info("private PostgreSQL cluster stopped", "dir", c.dir)
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return lastLines(string(b), n)
}
