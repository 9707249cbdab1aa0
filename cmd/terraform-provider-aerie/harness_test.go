package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	openapi_types "github.com/oapi-codegen/runtime/types"

	"github.com/aeriemq/aerie/internal/pgtest"
	"github.com/aeriemq/aerie/sdk"
)

// bins are the binaries TestMain builds: aerie, and the provider in a
// directory that the dev_overrides CLI config points aeriemq/aerie at.
var bins struct {
	aerie, cliConfig, terraform string
}

// terraformHelp says how to get terraform where it is missing.
const terraformHelp = "terraform is not on PATH: these tests drive the real terraform binary. " +
	"Install Terraform ≥ 1.11 (https://developer.hashicorp.com/terraform/install, e.g. apt-get install terraform " +
	"from apt.releases.hashicorp.com, or unzip the release into /usr/local/bin)"

func TestMain(m *testing.M) {
	tf, err := exec.LookPath("terraform")
	if err != nil {
		// Fail, not skip: make test is expected to pass only with terraform.
		fmt.Fprintln(os.Stderr, "FAIL:", terraformHelp)
		os.Exit(1)
	}
	bins.terraform = tf
	dir, err := os.MkdirTemp("", "aerie-tf-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.aerie = filepath.Join(dir, "aerie")
	for _, b := range [][2]string{{bins.aerie, "../aerie"}, {filepath.Join(dir, "terraform-provider-aerie"), "."}} {
		build := exec.Command("go", "build", "-o", b[0], b[1])
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", b[1]+":", err)
			os.Exit(1)
		}
	}
	bins.cliConfig = filepath.Join(dir, "terraformrc")
	rc := fmt.Sprintf("provider_installation {\n  dev_overrides {\n    \"aeriemq/aerie\" = %q\n  }\n  direct {}\n}\n", dir)
	if err := os.WriteFile(bins.cliConfig, []byte(rc), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := pgtest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a subprocess's output.
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

// server is a running `aerie serve`.
type server struct {
	base, mqtt string
	log        *syncBuffer
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

// serve starts `aerie serve` on a fresh database and waits for /readyz.
func serve(t testing.TB) *server {
	t.Helper()
	dataDir := t.TempDir()
	httpAddr, mqttAddr := freeAddr(t), freeAddr(t)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATABASE_URL") && !strings.HasPrefix(kv, "AERIE_") {
			env = append(env, kv)
		}
	}
	s := &server{base: "http://" + httpAddr, mqtt: mqttAddr, log: &syncBuffer{}}
	cmd := exec.Command(bins.aerie, "serve", "--data-dir", filepath.Join(dataDir, "data"), "--http-addr", httpAddr,
		"--mqtt-addr", mqttAddr, "--ws-addr", freeAddr(t), "--mqtts-addr", "127.0.0.1:0", "--wss-addr", "127.0.0.1:0")
	cmd.Env = append(env, "DATABASE_URL="+pgtest.EmptyDSN(t))
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("aerie serve output:\n%s", s.log.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-done:
			t.Fatalf("aerie serve exited before ready")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("aerie serve not ready within 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// account is a signed-up user: an SDK client on their session and their org.
type account struct {
	c     *sdk.API
	org   string
	email string
}

func (s *server) signup(t testing.TB, email string) account {
	t.Helper()
	ctx := context.Background()
	anon, err := sdk.NewClientWithResponses(s.base)
	if err != nil {
		t.Fatal(err)
	}
	const pw = "correct horse battery"
	r, err := anon.SignupWithResponse(ctx, nil, sdk.SignupJSONRequestBody{Email: openapi_types.Email(email), Password: pw, OrgName: "Org of " + email})
	if err := sdk.Check(r, err); err != nil {
		t.Fatalf("signup %s: %v", email, err)
	}
	c, err := sdk.New(ctx, sdk.Options{BaseURL: s.base, Email: email, Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	return account{c: c, org: r.JSON201.Org.Id, email: email}
}

// apiKey creates an admin API key for the account's org.
func (a account) apiKey(t testing.TB) (id, secret string) {
	t.Helper()
	r, err := a.c.CreateAPIKeyWithResponse(context.Background(), a.org, nil, sdk.CreateAPIKeyJSONRequestBody{Name: "terraform", Scopes: []sdk.Scope{"admin"}})
	if err := sdk.Check(r, err); err != nil {
		t.Fatal(err)
	}
	return r.JSON201.Id, r.JSON201.Secret
}

var mailedToken = regexp.MustCompile(`token=([^\s"\\&]+)`)

// acceptInvitation makes a join the org of the newest invitation mailed to
// it (the server logs mail when no SMTP relay is configured).
func (s *server) acceptInvitation(t testing.TB, a account) {
	t.Helper()
	var tok string
	for _, line := range strings.Split(s.log.String(), "\n") {
		if strings.Contains(line, a.email) && strings.Contains(line, "invitations/accept") {
			if m := mailedToken.FindStringSubmatch(line); m != nil {
				tok, _ = url.QueryUnescape(m[1])
			}
		}
	}
	if tok == "" {
		t.Fatalf("no invitation mailed to %s in the server log", a.email)
	}
	r, err := a.c.AcceptInvitationWithResponse(context.Background(), nil, sdk.AcceptInvitationJSONRequestBody{Token: tok})
	if err := sdk.Check(r, err); err != nil {
		t.Fatalf("accept invitation: %v", err)
	}
}

// workdir is a Terraform working directory driven with the real binary.
type workdir struct {
	t   testing.TB
	dir string
	env []string
}

func newWorkdir(t testing.TB, s *server, apiKey string) *workdir {
	dir := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TF_") && !strings.HasPrefix(kv, "AERIE_") {
			env = append(env, kv)
		}
	}
	env = append(env, "TF_CLI_CONFIG_FILE="+bins.cliConfig, "CHECKPOINT_DISABLE=1", "TF_IN_AUTOMATION=1",
		"AERIE_URL="+s.base, "AERIE_API_KEY="+apiKey)
	return &workdir{t: t, dir: dir, env: env}
}

func (w *workdir) write(config string) {
	w.t.Helper()
	if err := os.WriteFile(filepath.Join(w.dir, "main.tf"), []byte(config), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// run runs terraform with args and returns its combined output and exit
// code; it fails the test when the code is not one of ok.
func (w *workdir) run(ok []int, args ...string) (string, int) {
	w.t.Helper()
	cmd := exec.Command(bins.terraform, append(args, "-no-color")...)
	cmd.Dir, cmd.Env = w.dir, w.env
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, isExit := err.(*exec.ExitError); isExit {
		code = ee.ExitCode()
	} else if err != nil {
		w.t.Fatalf("terraform %v: %v", args, err)
	}
	for _, c := range ok {
		if c == code {
			return string(out), code
		}
	}
	w.t.Fatalf("terraform %s: exit %d, want %v\n%s", strings.Join(args, " "), code, ok, out)
	return "", 0
}

// outputs returns `terraform output -json` (sensitive values in clear).
func (w *workdir) outputs() map[string]json.RawMessage {
	w.t.Helper()
	out, _ := w.run([]int{0}, "output", "-json")
	var raw map[string]struct {
		Value json.RawMessage `json:"value"`
	}
	// -no-color is accepted by output; strip any warning before the JSON.
	if i := strings.Index(out, "{"); i > 0 {
		out = out[i:]
	}
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		w.t.Fatalf("terraform output -json: %v\n%s", err, out)
	}
	m := map[string]json.RawMessage{}
	for k, v := range raw {
		m[k] = v.Value
	}
	return m
}
