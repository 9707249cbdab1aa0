package mailer

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

func TestOutboxKeepsMessagesInOrder(t *testing.T) {
	o := NewOutbox()
	ctx := context.Background()
	_ = o.Send(ctx, Message{To: "a@example.com", Subject: "one"})
	_ = o.Send(ctx, Message{To: "b@example.com", Subject: "two"})
	_ = o.Send(ctx, Message{To: "A@example.com", Subject: "three"})
	if got := len(o.Messages()); got != 3 {
		t.Fatalf("%d messages, want 3", got)
	}
	m, ok := o.Last("a@example.com")
	if !ok || m.Subject != "three" {
		t.Fatalf("Last = %+v, %v", m, ok)
	}
	if _, ok := o.Last("c@example.com"); ok {
		t.Fatal("Last found a message for an address never mailed")
	}
}

func TestLogMailerWritesTheLink(t *testing.T) {
	var buf bytes.Buffer
	l := NewLog(slog.New(slog.NewTextHandler(&buf, nil)))
	if err := l.Send(context.Background(), Message{To: "a@example.com", Subject: "verify", Body: "https://x/verify?token=abc"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "token=abc") {
		t.Fatalf("log lacks the link: %s", buf.String())
	}
}

func TestSMTPRefusesHeaderInjection(t *testing.T) {
	s := NewSMTP(SMTPConfig{Addr: "127.0.0.1:1", From: "aerie@example.com"})
	if err := s.Send(context.Background(), Message{To: "a@example.com\r\nBcc: x@example.com", Subject: "s"}); err == nil {
		t.Fatal("a recipient with a line break was accepted")
	}
}

func TestFromEnvChoosesSMTPOnlyWhenConfigured(t *testing.T) {
	env := map[string]string{}
	get := func(k string) string { return env[k] }
	if _, ok := FromEnv(get, slog.Default()).(*Log); !ok {
		t.Fatal("no AERIE_SMTP_ADDR: want the log mailer")
	}
	env["AERIE_SMTP_ADDR"] = "smtp.example.com:587"
	if _, ok := FromEnv(get, slog.Default()).(*SMTP); !ok {
		t.Fatal("AERIE_SMTP_ADDR set: want the SMTP mailer")
	}
}
