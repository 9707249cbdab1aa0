package safelog

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type packet struct {
	Password []byte
	Payload  []byte
	Topic    string
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRedactDropsSecretsAndComposites(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(Redact(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	pk := packet{Password: []byte("PW-MARK-1"), Payload: []byte("PAYLOAD-MARK-2"), Topic: "t"}
	log.With("token", "TOKEN-MARK-3").Debug("x",
		"pk", pk, "pkp", &pk, "password", "PW-MARK-4", "raw", []byte("PAYLOAD-MARK-5"),
		"error", errors.New("dial postgres://aerie:PW-MARK-6@db/aerie: refused"),
		"dsn", "host=db password=PW-MARK-7", "hdr", "Bearer TOKEN-MARK-8",
		"conn", "user=a password=PW-MARK-9 host=b",
		"msg2", "key aer_abcd1234_MARKMARKMARK node aen_n-1_MARKMARK jwt eyJhbGciOiJFZERTQSJ9.eyJNQVJLIjoxfQ.MARKsig",
		slog.Group("g", "api_key", "KEY-MARK-10", "n", 3),
		"payload_bytes", 42, "topics", []string{"a", "b"}, "codes", []int{1, 2})
	out := buf.String()
	if strings.Contains(out, "MARK") {
		t.Fatalf("a secret reached the log: %s", out)
	}
	for _, want := range []string{"payload_bytes=42", "g.n=3", "[14 bytes]", "postgres://aerie:xxxxx@db", "topics=\"[a b]\"", "safelog.packet"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q: %s", want, out)
		}
	}
}

func TestPerClientLimitsEachClientAndSummarises(t *testing.T) {
	var buf syncBuf
	h := PerClient(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), LimitOptions{Burst: 5, Window: 200 * time.Millisecond})
	log := slog.New(h)
	noisy := log.With("client", "inst/dev")
	for range 1000 {
		noisy.Warn("refused")
		log.Info("refused", "instance", "inst", "client", "dev") // same client, other form
	}
	for range 3 {
		log.Info("other", "client", "inst/quiet")
		log.Info("global line")
		log.Info("pre-connect", "remote", "10.0.0.1:1234")
	}
	lines := func() []string { return strings.Split(strings.TrimSpace(buf.String()), "\n") }
	if n := len(lines()); n != 5+3+3+3 {
		t.Fatalf("%d lines before the window ended, want 14:\n%s", n, buf.String())
	}
	time.Sleep(500 * time.Millisecond)
	got := lines()
	if len(got) != 15 {
		t.Fatalf("%d lines after the window, want 15 (one summary):\n%s", len(got), buf.String())
	}
	sum := got[14]
	if !strings.Contains(sum, "log lines suppressed") || !strings.Contains(sum, "client=inst/dev") || !strings.Contains(sum, "suppressed=1995") || !strings.Contains(sum, "level=WARN") {
		t.Fatalf("summary line: %s", sum)
	}
	noisy.Warn("after the window")
	if n := len(lines()); n != 16 {
		t.Fatalf("a new window did not start: %d lines", n)
	}
}
