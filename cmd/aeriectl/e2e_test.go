package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"gopkg.in/yaml.v3"

	"github.com/aeriemq/aerie/internal/pgtest"
	"github.com/aeriemq/aerie/sdk"
)

var aerieBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "aeriectl-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	aerieBin = filepath.Join(dir, "aerie")
	build := exec.Command("go", "build", "-o", aerieBin, "../aerie")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build aerie:", err)
		os.Exit(1)
	}
	code := pgtest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// server is one `aerie serve` with a fresh database.
type server struct {
	url, mqtt string
	key, org  string
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServer runs `aerie serve`, signs up and returns an admin API key.
func startServer(t testing.TB) *server {
	t.Helper()
	d := t.TempDir()
	// The private cluster runs as the postgres user when tests run as
	// root: open the directories up as a checkout would be.
	for _, p := range []string{d, filepath.Dir(d)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	httpAddr, mqttAddr, wsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATABASE_URL") && !strings.HasPrefix(kv, "AERIE_") {
			env = append(env, kv)
		}
	}
	cmd := exec.Command(aerieBin, "serve", "--data-dir", filepath.Join(d, "data"), "--http-addr", httpAddr, "--mqtt-addr", mqttAddr,
		"--ws-addr", wsAddr, "--mqtts-addr", "127.0.0.1:0", "--wss-addr", "127.0.0.1:0")
	cmd.Env = append(env, "DATABASE_URL="+pgtest.EmptyDSN(t))
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("aerie serve output:\n%s", out.String())
		}
	})
	base := "http://" + httpAddr
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("aerie serve exited:\n%s", out.String())
		default:
		}
		r, err := http.Get(base + "/readyz")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("aerie serve not ready:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctx := context.Background()
	anon, err := sdk.NewClientWithResponses(base)
	if err != nil {
		t.Fatal(err)
	}
	s, err := anon.SignupWithResponse(ctx, nil, sdk.SignupJSONRequestBody{Email: "ops@example.com", Password: "correct horse battery", OrgName: "Ops"})
	if err := sdk.Check(s, err); err != nil {
		t.Fatal(err)
	}
	api, err := sdk.New(ctx, sdk.Options{BaseURL: base, Email: "ops@example.com", Password: "correct horse battery"})
	if err != nil {
		t.Fatal(err)
	}
	org := s.JSON201.Org.Id
	k, err := api.CreateAPIKeyWithResponse(ctx, org, nil, sdk.CreateAPIKeyJSONRequestBody{Name: "ci", Scopes: []sdk.Scope{sdk.ScopeAdmin}})
	if err := sdk.Check(k, err); err != nil {
		t.Fatal(err)
	}
	return &server{url: base, mqtt: mqttAddr, key: k.JSON201.Secret, org: org}
}

// ctl runs aeriectl in process against s and returns its exit code and
// output.
func (s *server) ctl(t testing.TB, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string {
		if env["NO_AERIE_ENV"] != "" {
			return env[k]
		}
		switch k {
		case "AERIE_URL":
			return s.url
		case "AERIE_API_KEY":
			return s.key
		}
		return env[k]
	}
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb, getenv)
	return code, out.String(), errb.String()
}

func (s *server) client(t testing.TB) *sdk.API {
	t.Helper()
	c, err := sdk.New(context.Background(), sdk.Options{BaseURL: s.url, APIKey: s.key})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fleet is the test file: instances × creds with ordered ACLs; instance
// "a" sets a quota; b's dev-001 has a supplied password from $DEV_PW.
func fleet(names []string, creds int) *File {
	f := &File{}
	for _, n := range names {
		in := InstanceSpec{Name: n}
		for i := 0; i < creds; i++ {
			c := CredentialSpec{Username: fmt.Sprintf("dev-%03d", i)}
			if n == "b" && i == 1 {
				c.PasswordEnv = "DEV_PW"
			}
			in.Credentials = append(in.Credentials, c)
		}
		acl := []RuleSpec{
			{Effect: "allow", Action: "publish", Filter: "devices/${username}/#"},
			{Effect: "allow", Action: "subscribe", Filter: "cmd/${username}/#"},
			{Effect: "deny", Action: "all", Filter: "secret/#"},
			{Effect: "allow", Action: "all", Filter: "#", Credential: "dev-000"},
		}
		in.ACL = &acl
		if n == "a" {
			in.Quotas = map[string]int64{"max_connections": 50}
		}
		f.Instances = append(f.Instances, in)
	}
	return f
}

func writeFile(t testing.TB, dir string, f *File) string {
	t.Helper()
	b, err := yaml.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "aerie.yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const devPW = "supplied-by-vault-01"

// connectDevice connects over MQTT 3.1.1, retrying while the node may
// still be applying the config.
func connectDevice(addr, user, pass string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		opts := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(user).SetUsername(user).SetPassword(pass).
			SetConnectRetry(false).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4)
		c := mqtt3.NewClient(opts)
		tok := c.Connect()
		tok.WaitTimeout(10 * time.Second)
		if tok.Error() == nil {
			c.Disconnect(0)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", user, tok.Error())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func summary(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Plan:") || strings.HasPrefix(l, "No changes.") {
			return l
		}
	}
	return ""
}

// TestDeclarativeApply: plan/apply of 3 instances × 100 credentials with
// ordered ACLs against a real `aerie serve`.
func TestDeclarativeApply(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	api := s.client(t)
	dir := t.TempDir()
	env := map[string]string{"DEV_PW": devPW, "AERIECTL_CONFIG": filepath.Join(dir, "cfg.yaml")}
	f := fleet([]string{"a", "b", "c"}, 100)

	t.Run("an invalid rule anywhere fails validation with nothing changed", func(t *testing.T) {
		bad := fleet([]string{"a", "b", "c"}, 100)
		(*bad.Instances[2].ACL)[2].Filter = "secret/#/x"
		path := writeFile(t, t.TempDir(), bad)
		code, _, stderr := s.ctl(t, env, "apply", "-f", path)
		if code != 1 || !strings.Contains(stderr, "instances[2].acl[2].filter") {
			t.Fatalf("exit %d, stderr %s", code, stderr)
		}
		if in, err := sdk.Collect(ctx, api.InstancesPages(s.org)); err != nil || len(in) != 0 {
			t.Fatalf("instances after a refused apply: %d %v", len(in), err)
		}
	})

	path := writeFile(t, dir, f)
	code, out, stderr := s.ctl(t, env, "plan", "-f", path)
	// Per instance: +1 instance, +100 credentials, the 4 rules against
	// the default one (1 ~, 3 +); a's quota is 1 ~.
	if want := "Plan: 312 to add, 4 to change, 0 to destroy."; code != 2 || summary(out) != want {
		t.Fatalf("plan: exit %d, %q (want %q)\n%s", code, summary(out), want, stderr)
	}
	if in, _ := sdk.Collect(ctx, api.InstancesPages(s.org)); len(in) != 0 {
		t.Fatal("plan changed something")
	}

	secrets := filepath.Join(dir, "secrets.yaml")
	code, out, stderr = s.ctl(t, env, "apply", "-f", path, "--secrets-file", secrets)
	if code != 0 || !strings.Contains(out, "Apply complete: 312 added, 4 changed, 0 destroyed.") {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, stderr)
	}
	st, err := os.Stat(secrets)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secrets file: %v %v", st, err)
	}
	var sf struct{ Credentials []Secret }
	b, _ := os.ReadFile(secrets)
	if err := yaml.Unmarshal(b, &sf); err != nil || len(sf.Credentials) != 299 {
		t.Fatalf("secrets: %d (want 299 generated) %v", len(sf.Credentials), err)
	}

	t.Run("devices connect with the emitted secrets", func(t *testing.T) {
		var ids = map[string]string{}
		for _, c := range sf.Credentials {
			ids[c.Instance] = c.InstanceID
		}
		jobs := make(chan [2]string)
		errs := make(chan error, len(sf.Credentials)+1)
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range jobs {
					errs <- connectDevice(s.mqtt, j[0], j[1], 10*time.Second)
				}
			}()
		}
		// Every tenth device of each instance and the last one (the
		// instances' connect-rate quotas make all 300 take half a minute).
		n := 0
		for _, c := range sf.Credentials {
			if strings.HasSuffix(c.Username, "0") || c.Username == "dev-099" {
				jobs <- [2]string{c.MQTTUsername, c.Password}
				n++
			}
		}
		if n != 33 {
			t.Errorf("%d devices sampled", n)
		}
		jobs <- [2]string{"dev-001@" + ids["b"], devPW}
		close(jobs)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := connectDevice(s.mqtt, "dev-001@"+ids["b"], devPW+"-wrong", 0); err == nil {
			t.Fatal("a wrong supplied password connected")
		}
	})

	code, out, _ = s.ctl(t, env, "plan", "-f", path)
	if code != 0 || summary(out) != "No changes. The org matches the file." {
		t.Fatalf("second plan: exit %d\n%s", code, out)
	}
	code, out, _ = s.ctl(t, env, "apply", "-f", path)
	if code != 0 || strings.Contains(out, "Apply complete") {
		t.Fatalf("second apply: exit %d\n%s", code, out)
	}

	t.Run("editing one ACL rule plans exactly one change", func(t *testing.T) {
		(*f.Instances[1].ACL)[1].Filter = "cmd/${username}/+"
		writeFile(t, dir, f)
		code, out, _ := s.ctl(t, env, "plan", "-f", path)
		if code != 2 || summary(out) != "Plan: 0 to add, 1 to change, 0 to destroy." || !strings.Contains(out, "~ acl b[1]") {
			t.Fatalf("exit %d\n%s", code, out)
		}
		if code, out, _ := s.ctl(t, env, "apply", "-f", path); code != 0 {
			t.Fatalf("apply: %d\n%s", code, out)
		}
		if code, out, _ := s.ctl(t, env, "plan", "-f", path); code != 0 {
			t.Fatalf("plan after apply: %d\n%s", code, out)
		}
	})

	t.Run("--prune deletes what the file no longer lists, and only that", func(t *testing.T) {
		all, err := sdk.Collect(ctx, api.InstancesPages(s.org))
		if err != nil || len(all) != 3 {
			t.Fatalf("instances %d %v", len(all), err)
		}
		byName := map[string]sdk.Instance{}
		for _, in := range all {
			byName[in.Name] = in
		}
		beforeB, _ := sdk.Collect(ctx, api.CredentialsPages(s.org, byName["b"].Id))
		f.Instances = f.Instances[:2]                                // drop c
		f.Instances[0].Credentials = f.Instances[0].Credentials[:90] // drop a's dev-090…099
		writeFile(t, dir, f)
		if code, out, _ := s.ctl(t, env, "plan", "-f", path); code != 0 {
			t.Fatalf("without --prune nothing is deleted: %d\n%s", code, out)
		}
		code, out, _ := s.ctl(t, env, "plan", "-f", path, "--prune")
		if code != 2 || summary(out) != "Plan: 0 to add, 0 to change, 11 to destroy." {
			t.Fatalf("plan --prune: %d\n%s", code, out)
		}
		if code, out, errOut := s.ctl(t, env, "apply", "-f", path, "--prune"); code != 0 {
			t.Fatalf("apply --prune: %d\n%s\n%s", code, out, errOut)
		}
		if code, out, _ := s.ctl(t, env, "plan", "-f", path, "--prune"); code != 0 {
			t.Fatalf("plan --prune after apply: %d\n%s", code, out)
		}
		credsA, _ := sdk.Collect(ctx, api.CredentialsPages(s.org, byName["a"].Id))
		afterB, _ := sdk.Collect(ctx, api.CredentialsPages(s.org, byName["b"].Id))
		if len(credsA) != 90 || len(afterB) != 100 || afterB[0].Id != beforeB[0].Id || afterB[99].Id != beforeB[99].Id {
			t.Fatalf("a has %d credentials (want 90); b %d (want its 100 untouched)", len(credsA), len(afterB))
		}
		for _, c := range credsA {
			if c.Username >= "dev-090" {
				t.Fatalf("pruned credential %s still there", c.Username)
			}
		}
		g, err := api.GetInstanceWithResponse(ctx, s.org, byName["c"].Id)
		if err := sdk.Check(g, err); err == nil && g.JSON200.Status != sdk.InstanceStatusDeleting {
			t.Fatalf("instance c: %+v", g.JSON200)
		}
	})

	t.Run("login, contexts and single resources", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "sub", "aeriectl.yaml")
		only := map[string]string{"NO_AERIE_ENV": "1", "AERIECTL_CONFIG": cfg, "AERIE_PASSWORD": "correct horse battery"}
		if code, _, errOut := s.ctl(t, only, "list", "instances"); code != 1 || !strings.Contains(errOut, "not logged in") {
			t.Fatalf("before login: %d %s", code, errOut)
		}
		if code, out, errOut := s.ctl(t, only, "login", "--url", s.url, "--api-key", s.key, "--name", "ci"); code != 0 {
			t.Fatalf("login: %d %s %s", code, out, errOut)
		}
		if code, out, errOut := s.ctl(t, only, "login", "--url", s.url, "--email", "ops@example.com", "--name", "me"); code != 0 {
			t.Fatalf("login --email: %d %s %s", code, out, errOut)
		}
		st, err := os.Stat(cfg)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("profile: %v %v", st, err)
		}
		if code, out, _ := s.ctl(t, only, "config", "use-context", "ci"); code != 0 || !strings.Contains(out, `"ci"`) {
			t.Fatalf("use-context: %d %s", code, out)
		}
		if code, _, _ := s.ctl(t, only, "config", "use-context", "nope"); code != 1 {
			t.Fatal("use-context of an unknown context succeeded")
		}
		code, out, errOut := s.ctl(t, only, "list", "instances", "-o", "table")
		if code != 0 || !strings.HasPrefix(out, "ID") || !strings.Contains(out, " a ") {
			t.Fatalf("list instances: %d\n%s\n%s", code, out, errOut)
		}
		code, out, _ = s.ctl(t, only, "get", "instance", "a", "-o", "json")
		var got sdk.Instance
		if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.Name != "a" {
			t.Fatalf("get instance -o json: %d %s", code, out)
		}
		code, out, _ = s.ctl(t, only, "get", "credential", "dev-005", "--instance", "a", "-o", "yaml")
		if code != 0 || !strings.Contains(out, "username: dev-005") {
			t.Fatalf("get credential -o yaml: %d %s", code, out)
		}
		code, out, _ = s.ctl(t, only, "create", "credential", "extra-1", "--instance", "a", "-o", "json")
		var cr sdk.CredentialWithPassword
		if code != 0 || json.Unmarshal([]byte(out), &cr) != nil || cr.Password == nil || cr.Username != "extra-1" {
			t.Fatalf("create credential: %d %s", code, out)
		}
		if code, _, errOut := s.ctl(t, only, "create", "credential", "extra-1", "--instance", "a"); code != 1 || !strings.Contains(errOut, "409") {
			t.Fatalf("duplicate credential: %d %s", code, errOut)
		}
		if code, out, _ := s.ctl(t, only, "delete", "credential", "extra-1", "--instance", "a"); code != 0 {
			t.Fatalf("delete credential: %d %s", code, out)
		}
		code, out, _ = s.ctl(t, only, "list", "acl-rules", "--instance", "b", "-o", "json")
		var rules []sdk.ACLRule
		if code != 0 || json.Unmarshal([]byte(out), &rules) != nil || len(rules) != 4 || rules[1].Filter != "cmd/${username}/+" || rules[3].Position != 3 {
			t.Fatalf("acl rules: %d %s", code, out)
		}
	})
}
