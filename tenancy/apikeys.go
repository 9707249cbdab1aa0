package tenancy

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// APIKey is an org's API key (never its secret).
type APIKey struct {
	ID         string
	OrgID      string
	CreatedBy  string
	Name       string
	Prefix     string
	Scopes     []Scope
	CreatedAt  time.Time
	LastUsedAt *time.Time
	ExpiresAt  *time.Time
}

// MaxScope is the highest scope the key holds.
func (k APIKey) MaxScope() Scope {
	var best Scope
	for _, s := range k.Scopes {
		if s.Rank() > best.Rank() {
			best = s
		}
	}
	return best
}

// NewAPIKey is what creating a key takes. MaxScope is the highest scope the
// caller may grant (its role's, or its own key's).
type NewAPIKey struct {
	Name      string
	Scopes    []Scope
	ExpiresAt *time.Time
	MaxScope  Scope
}

// CreateAPIKey creates a key and returns it with its secret token
// (aer_<prefix>_<secret>), which is shown once and stored only as SHA-256.
func (s *Service) CreateAPIKey(ctx context.Context, a Actor, orgID string, in NewAPIKey) (APIKey, string, error) {
	var fields []FieldError
	name := strings.TrimSpace(in.Name)
	if name == "" || len([]rune(name)) > 100 {
		fields = append(fields, FieldError{Field: "name", Message: "must be 1 to 100 characters"})
	}
	if len(in.Scopes) == 0 {
		fields = append(fields, FieldError{Field: "scopes", Message: "must name at least one scope"})
	}
	var scopes []Scope
	for _, sc := range in.Scopes {
		if sc.Rank() == 0 {
			fields = append(fields, FieldError{Field: "scopes", Message: "must be consume, read, write or admin"})
			break
		}
		if !slices.Contains(scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	if in.ExpiresAt != nil && !in.ExpiresAt.After(s.now()) {
		fields = append(fields, FieldError{Field: "expires_at", Message: "must be in the future"})
	}
	if len(fields) > 0 {
		return APIKey{}, "", &ValidationError{Fields: fields}
	}
	for _, sc := range scopes {
		if sc.Rank() > in.MaxScope.Rank() {
			return APIKey{}, "", fmt.Errorf("%w: scope %q exceeds your own", ErrForbidden, sc)
		}
	}
	k := APIKey{ID: NewID("k"), OrgID: orgID, CreatedBy: a.UserID, Name: name, Prefix: randomToken(5),
		Scopes: scopes, CreatedAt: s.nowUTC(), ExpiresAt: truncUTC(in.ExpiresAt)}
	secret := randomToken(32)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if err := s.checkOrgLimit(ctx, tx, orgID, limitAPIKeys, "", 1); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO api_keys (id, org_id, created_by, name, prefix, secret_hash, scopes, created_at, expires_at)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)`, k.ID, orgID, a.UserID, k.Name, k.Prefix, sha(secret), scopes, k.CreatedAt, k.ExpiresAt)
		if isUniqueViolation(err) {
			return taken("name", "an API key with this name exists in the org")
		}
		if err != nil {
			return fmt.Errorf("insert api key: %w", err)
		}
		return s.audit(ctx, tx, a, orgID, "api_key.create", k.ID)
	})
	if err != nil {
		return APIKey{}, "", err
	}
	return k, "aer_" + k.Prefix + "_" + secret, nil
}

const apiKeyCols = `id, org_id, created_by, name, prefix, scopes, created_at, last_used_at, expires_at`

func scanAPIKey(r pgx.CollectableRow) (APIKey, error) {
	var k APIKey
	err := r.Scan(&k.ID, &k.OrgID, &k.CreatedBy, &k.Name, &k.Prefix, &k.Scopes, &k.CreatedAt, &k.LastUsedAt, &k.ExpiresAt)
	return k, err
}

// ListAPIKeys lists an org's live (unrevoked) keys by ID.
func (s *Service) ListAPIKeys(ctx context.Context, orgID string, p Page) ([]APIKey, string, error) {
	rows, err := s.db.Query(ctx, `SELECT `+apiKeyCols+` FROM api_keys WHERE org_id = $1 AND revoked_at IS NULL AND id > $2 AND ($4 = '' OR name = $4) ORDER BY id LIMIT $3`,
		orgID, p.After, p.limit()+1, p.Name)
	if err != nil {
		return nil, "", fmt.Errorf("list api keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, scanAPIKey)
	if err != nil {
		return nil, "", fmt.Errorf("list api keys: %w", err)
	}
	keys, next := trimPage(keys, p.limit(), func(k APIKey) string { return k.ID })
	return keys, next, nil
}

// APIKey returns one live key of an org.
func (s *Service) APIKey(ctx context.Context, orgID, id string) (APIKey, error) {
	rows, err := s.db.Query(ctx, `SELECT `+apiKeyCols+` FROM api_keys WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL`, orgID, id)
	if err != nil {
		return APIKey{}, fmt.Errorf("get api key: %w", err)
	}
	k, err := pgx.CollectExactlyOneRow(rows, scanAPIKey)
	return k, notFound(err)
}

// RevokeAPIKey revokes a key; it is refused from the next request on.
func (s *Service) RevokeAPIKey(ctx context.Context, a Actor, orgID, id string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE api_keys SET revoked_at = $3 WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL`, orgID, id, s.now())
		if err != nil {
			return fmt.Errorf("revoke api key: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return s.audit(ctx, tx, a, orgID, "api_key.delete", id)
	})
}

// KeyAuth is an authenticated API key and the current role of its creator
// (a key never exceeds its creator's role).
type KeyAuth struct {
	Key         APIKey
	CreatorRole Role
}

// EffectiveScope is the key's highest scope capped by its creator's role.
func (k KeyAuth) EffectiveScope() Scope {
	s := k.Key.MaxScope()
	if m := k.CreatorRole.MaxScope(); m.Rank() < s.Rank() {
		return m
	}
	return s
}

// LooksLikeAPIKey reports whether a bearer token has the API key shape.
func LooksLikeAPIKey(token string) bool { return strings.HasPrefix(token, "aer_") }

// AuthenticateAPIKey checks a token aer_<prefix>_<secret>: known, live, not
// expired, and its creator still a member of the org. It records the use.
func (s *Service) AuthenticateAPIKey(ctx context.Context, token string) (KeyAuth, error) {
	rest, ok := strings.CutPrefix(token, "aer_")
	prefix, secret, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 || prefix == "" || secret == "" {
		return KeyAuth{}, ErrUnauthenticated
	}
	var k APIKey
	var hash []byte
	var revoked *time.Time
	var role *Role
	err := s.db.QueryRow(ctx, `SELECT k.id, k.org_id, k.created_by, k.name, k.prefix, k.scopes, k.created_at, k.last_used_at, k.expires_at,
			k.secret_hash, k.revoked_at, m.role
		FROM api_keys k LEFT JOIN org_members m ON m.org_id = k.org_id AND m.user_id = k.created_by
		WHERE k.prefix = $1`, prefix).Scan(&k.ID, &k.OrgID, &k.CreatedBy, &k.Name, &k.Prefix, &k.Scopes, &k.CreatedAt, &k.LastUsedAt, &k.ExpiresAt,
		&hash, &revoked, &role)
	if errors.Is(err, pgx.ErrNoRows) {
		return KeyAuth{}, ErrUnauthenticated
	}
	if err != nil {
		return KeyAuth{}, fmt.Errorf("look up api key: %w", err)
	}
	if subtle.ConstantTimeCompare(hash, sha(secret)) != 1 || revoked != nil || role == nil ||
		(k.ExpiresAt != nil && !s.now().Before(*k.ExpiresAt)) {
		return KeyAuth{}, ErrUnauthenticated
	}
	now := s.nowUTC()
	if k.LastUsedAt == nil || now.Sub(*k.LastUsedAt) > time.Second {
		if _, err := s.db.Exec(ctx, `UPDATE api_keys SET last_used_at = $2 WHERE id = $1`, k.ID, now); err != nil {
			return KeyAuth{}, fmt.Errorf("record api key use: %w", err)
		}
		k.LastUsedAt = &now
	}
	return KeyAuth{Key: k, CreatorRole: *role}, nil
}

func truncUTC(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC().Truncate(time.Microsecond)
	return &u
}
