// Package mailer sends Aerie's transactional email (verification, password
// reset, invitations). SMTP sends through a configured relay, Log writes the
// message (and so the link) to the log for development, and Outbox keeps
// messages in memory for tests.
package mailer

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/smtp"
	"strings"
	"sync"
)

// Message is one email.
type Message struct {
	To      string
	Subject string
	Body    string // plain text
}

// Mailer sends email.
type Mailer interface {
	Send(ctx context.Context, m Message) error
}

// SMTPConfig configures an SMTP relay.
type SMTPConfig struct {
	Addr     string // host:port
	From     string
	Username string // optional; PLAIN auth when set
	Password string
}

// SMTP sends through an SMTP relay with net/smtp (STARTTLS when offered).
type SMTP struct{ cfg SMTPConfig }

// NewSMTP returns a mailer for cfg.
func NewSMTP(cfg SMTPConfig) *SMTP { return &SMTP{cfg: cfg} }

// Send delivers m.
func (s *SMTP) Send(_ context.Context, m Message) error {
	if strings.ContainsAny(m.To, "\r\n") || strings.ContainsAny(m.Subject, "\r\n") {
		return fmt.Errorf("mailer: header contains a line break")
	}
	var auth smtp.Auth
	if s.cfg.Username != "" {
		host, _, err := net.SplitHostPort(s.cfg.Addr)
		if err != nil {
			return fmt.Errorf("mailer: smtp address %q: %w", s.cfg.Addr, err)
		}
		auth = smtp.PlainAuth("", s.cfg.Username, s.cfg.Password, host)
	}
	msg := "From: " + s.cfg.From + "\r\nTo: " + m.To + "\r\nSubject: " + m.Subject +
		"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
		strings.ReplaceAll(m.Body, "\n", "\r\n")
	if err := smtp.SendMail(s.cfg.Addr, auth, s.cfg.From, []string{m.To}, []byte(msg)); err != nil {
		return fmt.Errorf("mailer: send to %s: %w", m.To, err)
	}
	return nil
}

// Log writes each message to a logger instead of sending it (development:
// the verification or reset link appears in the log).
type Log struct{ log *slog.Logger }

// NewLog returns a mailer that logs.
func NewLog(log *slog.Logger) *Log { return &Log{log: log} }

// Send logs m.
func (l *Log) Send(ctx context.Context, m Message) error {
	l.log.InfoContext(ctx, "email not sent (no SMTP configured)", "to", m.To, "subject", m.Subject, "body", m.Body)
	return nil
}

// Outbox keeps sent messages in memory; tests read them back.
type Outbox struct {
	mu   sync.Mutex
	msgs []Message
}

// NewOutbox returns an empty outbox.
func NewOutbox() *Outbox { return &Outbox{} }

// Send records m.
func (o *Outbox) Send(_ context.Context, m Message) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.msgs = append(o.msgs, m)
	return nil
}

// Messages returns a copy of every message sent so far.
func (o *Outbox) Messages() []Message {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Message(nil), o.msgs...)
}

// Last returns the newest message sent to to, and whether there was one.
func (o *Outbox) Last(to string) (Message, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := len(o.msgs) - 1; i >= 0; i-- {
		if strings.EqualFold(o.msgs[i].To, to) {
			return o.msgs[i], true
		}
	}
	return Message{}, false
}

// FromEnv returns an SMTP mailer when AERIE_SMTP_ADDR is set (with
// AERIE_SMTP_FROM, AERIE_SMTP_USERNAME, AERIE_SMTP_PASSWORD), otherwise a
// mailer that logs. getenv is os.Getenv in production.
func FromEnv(getenv func(string) string, log *slog.Logger) Mailer {
	addr := getenv("AERIE_SMTP_ADDR")
	if addr == "" {
		return NewLog(log)
	}
	from := getenv("AERIE_SMTP_FROM")
	if from == "" {
		from = "aerie@localhost"
	}
	return NewSMTP(SMTPConfig{Addr: addr, From: from, Username: getenv("AERIE_SMTP_USERNAME"), Password: getenv("AERIE_SMTP_PASSWORD")})
}
