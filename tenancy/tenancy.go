// Package tenancy is the control plane's tenant domain over Postgres: who
// the tenants are and what they have provisioned for their devices.
//
//   - Identity: users, passwords, email verification and resets, sessions
//     (access JWTs and refresh tokens), orgs and their members,
//     invitations, API keys, and the audit log.
//   - Instances and what their devices use: device credentials, device
//     tokens and their signing keys (sealed at rest), ACL rules, topics,
//     quotas (bounded by the org's plan, which billing provides through
//     PlanSource) and the plan's limits on what an org holds, billing
//     limits (throttle, suspend).
//   - Placement and the node link: data-plane nodes and their liveness,
//     the config outbox every change is written to in its own transaction,
//     the feed that streams it to nodes in revision order and waits until
//     they applied it, HTTP publish through a node, and NodeInspector, the
//     port that reads live clients and sessions from a node.
//
// It knows nothing of HTTP: the api and console packages call the same
// Service. Tenant scope is enforced here: every org-scoped method takes the
// org ID and every query it runs filters on it, so an ID of another org is
// ErrNotFound. Its errors (ErrNotFound, ErrConflict, …) are the domain's
// vocabulary; internal/problem maps them to what callers are told.
package tenancy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aeriemq/aerie/internal/mailer"
	"github.com/aeriemq/aerie/internal/secretbox"
)

// Errors returned by the service; the API maps each to one HTTP problem.
var (
	// ErrNotFound: the thing does not exist or belongs to another org.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a unique value (email, …) is already taken.
	ErrConflict = errors.New("conflict")
	// ErrUnauthenticated: credentials or token are wrong, expired or revoked.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden: the caller is known but may not do this.
	ErrForbidden = errors.New("forbidden")
	// ErrStale: the thing changed since the caller read it (optimistic
	// concurrency; the API answers 412).
	ErrStale = errors.New("changed since it was read")
	// ErrLastOwner: the change would leave an org without an owner.
	ErrLastOwner = errors.New("an org must keep at least one owner")
)

// FieldError names one invalid input field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError lists every invalid field of an input.
type ValidationError struct {
	Fields []FieldError
	// Conflict marks a value already taken (a duplicate name): the error
	// is then also ErrConflict (409 in the API), with the field.
	Conflict bool
}

// Is makes a Conflict ValidationError match ErrConflict.
func (e *ValidationError) Is(target error) bool { return e.Conflict && target == ErrConflict }

// taken builds the Conflict ValidationError of one field.
func taken(field, msg string) error {
	return &ValidationError{Conflict: true, Fields: []FieldError{{Field: field, Message: msg}}}
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// invalid builds a ValidationError of one field.
func invalid(field, msg string) error {
	return &ValidationError{Fields: []FieldError{{Field: field, Message: msg}}}
}

// Role is a member's role in an org.
type Role string

// Roles, lowest to highest.
const (
	RoleViewer Role = "viewer"
	RoleAdmin  Role = "admin"
	RoleOwner  Role = "owner"
)

// Rank orders roles (0 for unknown).
func (r Role) Rank() int { return rank(r, RoleViewer, RoleAdmin, RoleOwner) }

// rank is v's place (from 1) in lowestFirst; 0 when it is not there.
func rank[T comparable](v T, lowestFirst ...T) int {
	for i, x := range lowestFirst {
		if x == v {
			return i + 1
		}
	}
	return 0
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r.Rank() > 0 }

// MaxScope is the highest API scope the role may hold or grant.
func (r Role) MaxScope() Scope {
	switch r {
	case RoleOwner, RoleAdmin:
		return ScopeAdmin
	case RoleViewer:
		return ScopeRead
	}
	return ""
}

// Scope is an API permission level: consume < read < write < admin.
// consume is least privilege for cloud applications: reading a topic's
// messages as a consumer group and committing them, nothing else.
type Scope string

// Scopes, lowest to highest.
const (
	ScopeConsume Scope = "consume"
	ScopeRead    Scope = "read"
	ScopeWrite   Scope = "write"
	ScopeAdmin   Scope = "admin"
)

// Rank orders scopes (0 for unknown).
func (s Scope) Rank() int { return rank(s, ScopeConsume, ScopeRead, ScopeWrite, ScopeAdmin) }

// Actor is who makes a mutating call, for the audit log: a user, or an API
// key (with the user who created it), plus where the call came from.
type Actor struct {
	UserID     string
	APIKeyID   string // set when the call is made with an API key
	ClientAddr string
	RequestID  string
}

func (a Actor) typeAndID() (string, string) {
	if a.APIKeyID != "" {
		return "api_key", a.APIKeyID
	}
	return "user", a.UserID
}

// PasswordParams are the argon2id cost parameters.
type PasswordParams struct {
	Memory      uint32 // KiB
	Iterations  uint32
	Parallelism uint8
}

// DefaultPasswordParams follow RFC 9106's second recommendation (64 MiB, 3
// passes), with parallelism 2.
var DefaultPasswordParams = PasswordParams{Memory: 64 * 1024, Iterations: 3, Parallelism: 2}

// Service is the tenancy domain over Postgres.
type Service struct {
	db         *pgxpool.Pool
	log        *slog.Logger
	mail       mailer.Mailer
	pw         PasswordParams
	now        func() time.Time
	baseURL    string
	liveWindow time.Duration      // 0: nodeLiveWindow
	secrets    *secretbox.Keyring // seals private keys at rest; nil stores them plain (tests)
	plans      PlanSource         // billing's plans; nil: no plan lookups
	accessTTL  time.Duration
	refreshTTL time.Duration

	// cellRefused: the (node, stated cell) pairs already logged as refused.
	cellRefused sync.Map

	dummyOnce sync.Once
	dummy     string

	keysMu     sync.Mutex
	keys       *signingKeys
	keysLoaded time.Time
}

// Option configures a Service.
type Option func(*Service)

// WithMailer sets the mailer (default: log the messages).
func WithMailer(m mailer.Mailer) Option { return func(s *Service) { s.mail = m } }

// WithPasswordParams sets the argon2id cost (tests lower it).
func WithPasswordParams(p PasswordParams) Option { return func(s *Service) { s.pw = p } }

// WithClock sets the time source.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithSecretKeys seals private keys at rest (device-token signing keys, and
// any later secret) with the keyring's current key-encryption key.
func WithSecretKeys(kr *secretbox.Keyring) Option { return func(s *Service) { s.secrets = kr } }

// WithNodeLiveWindow sets how recently a data-plane node must have reported
// to count as up: to take new instances, to be sent requests, to be waited
// for, and to keep its cell healthy (default 15 s; nodes report every 5 s).
func WithNodeLiveWindow(d time.Duration) Option { return func(s *Service) { s.liveWindow = d } }

// WithBaseURL sets the public URL used in emailed links.
func WithBaseURL(u string) Option { return func(s *Service) { s.baseURL = strings.TrimRight(u, "/") } }

// NewService returns the tenancy service over db.
func NewService(db *pgxpool.Pool, log *slog.Logger, opts ...Option) *Service {
	if log == nil {
		log = slog.Default()
	}
	s := &Service{
		db: db, log: log, pw: DefaultPasswordParams, now: time.Now,
		baseURL: "http://localhost:8080", accessTTL: 15 * time.Minute, refreshTTL: 30 * 24 * time.Hour,
	}
	for _, o := range opts {
		o(s)
	}
	if s.mail == nil {
		s.mail = mailer.NewLog(log)
	}
	return s
}

// AccessTTL is how long an access JWT lives.
func (s *Service) AccessTTL() time.Duration { return s.accessTTL }

// querier is a pool or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// inTx runs fn in a transaction, committing when it returns nil.
func (s *Service) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.db, fn)
}

// Page asks for one page of a list: items after the key After (empty for the
// first page), at most Limit of them.
type Page struct {
	After string
	Limit int
	// Name, when set, keeps only the item with this name (an instance's or
	// API key's name, a credential's username).
	Name string
}

func (p Page) limit() int {
	if p.Limit <= 0 || p.Limit > 200 {
		return 50
	}
	return p.Limit
}

// trimPage cuts a list fetched with limit+1 rows and returns the key of the
// last item when there are more.
func trimPage[T any](items []T, limit int, key func(T) string) ([]T, string) {
	if len(items) <= limit {
		return items, ""
	}
	items = items[:limit]
	return items, key(items[limit-1])
}

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// NewID returns a time-ordered, unguessable ID with a type prefix
// ("u", "o", "k", …): prefix-<48-bit ms time><80 random bits>, base32hex.
func NewID(prefix string) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return prefix + "-" + idEncoding.EncodeToString(b[:])
}

// randomToken returns n random bytes, base32 (lower case, no padding).
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return idEncoding.EncodeToString(b)
}

func sha(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func isUniqueViolation(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "23505"
}

func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// audit records one event in the audit log within q (the mutation's tx).
func (s *Service) audit(ctx context.Context, q querier, a Actor, orgID, action, target string) error {
	typ, id := a.typeAndID()
	_, err := q.Exec(ctx, `INSERT INTO audit_events (id, org_id, actor_type, actor_id, action, target, client_addr, request_id, created_at)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)`, NewID("ev"), orgID, typ, id, action, target, a.ClientAddr, a.RequestID, s.now())
	if err != nil {
		return fmt.Errorf("record audit event %s: %w", action, err)
	}
	return nil
}

// RecordAudit writes one audit event outside a transaction, for mutations
// made elsewhere (later packages) that have no tenancy transaction.
func (s *Service) RecordAudit(ctx context.Context, a Actor, orgID, action, target string) error {
	return s.audit(ctx, s.db, a, orgID, action, target)
}

// nowUTC is the current time at Postgres precision (µs), so what a write
// returns equals what a later read returns (and so do their ETags).
func (s *Service) nowUTC() time.Time { return s.now().UTC().Truncate(time.Microsecond) }
