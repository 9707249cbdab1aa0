package tenancy

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"

	"github.com/aeriemq/aerie/nodelink"
)

// Device-token lifetimes.
const (
	MinDeviceTokenTTL = time.Minute
	MaxDeviceTokenTTL = 30 * 24 * time.Hour
)

// DeviceTokenUsername is the username (before "@<instance-id>") a device
// uses to connect with a device token as its password; no credential may
// take it.
const DeviceTokenUsername = nodelink.DeviceTokenUsername

// TokenResource is one topic filter a device token may use, and how.
type TokenResource struct {
	Filter  string   `json:"filter"`
	Actions []string `json:"actions"` // "publish", "subscribe"
}

// DeviceToken is an issued device token (never the token itself).
type DeviceToken struct {
	JTI        string
	InstanceID string
	ClientID   string
	Resources  []TokenResource
	IssuedAt   time.Time
	ExpiresAt  time.Time
	RevokedAt  *time.Time
}

// NewDeviceToken is what issuing a token takes.
type NewDeviceToken struct {
	ClientID  string
	Resources []TokenResource
	TTL       time.Duration
}

// deviceJWTClaims adapts nodelink.DeviceTokenClaims to jwt.Claims for signing.
type deviceJWTClaims struct{ nodelink.DeviceTokenClaims }

func (c deviceJWTClaims) GetExpirationTime() (*jwt.NumericDate, error) {
	return jwt.NewNumericDate(time.Unix(c.ExpiresAt, 0)), nil
}
func (c deviceJWTClaims) GetIssuedAt() (*jwt.NumericDate, error) {
	return jwt.NewNumericDate(time.Unix(c.IssuedAt, 0)), nil
}
func (c deviceJWTClaims) GetNotBefore() (*jwt.NumericDate, error) { return nil, nil }
func (c deviceJWTClaims) GetIssuer() (string, error)              { return c.Issuer, nil }
func (c deviceJWTClaims) GetSubject() (string, error)             { return "", nil }
func (c deviceJWTClaims) GetAudience() (jwt.ClaimStrings, error) {
	return jwt.ClaimStrings{c.Audience}, nil
}

// IssueDeviceToken signs a short-lived token limited to Resources (and
// ClientID when set) with the instance's key; the data plane verifies it
// offline. The device connects as "token@<instance>" with it as password.
func (s *Service) IssueDeviceToken(ctx context.Context, a Actor, orgID, instanceID string, in NewDeviceToken) (DeviceToken, string, error) {
	var fields []FieldError
	if in.TTL < MinDeviceTokenTTL || in.TTL > MaxDeviceTokenTTL {
		fields = append(fields, FieldError{Field: "ttl_seconds", Message: "must be between 60 and 2592000"})
	}
	if len(in.Resources) == 0 || len(in.Resources) > 50 {
		fields = append(fields, FieldError{Field: "resources", Message: "must list 1 to 50 resources"})
	}
	for i, r := range in.Resources {
		if !ValidACLFilter(r.Filter) {
			fields = append(fields, FieldError{Field: fmt.Sprintf("resources[%d].filter", i), Message: "must be a valid MQTT topic filter"})
		}
		if len(r.Actions) == 0 {
			fields = append(fields, FieldError{Field: fmt.Sprintf("resources[%d].actions", i), Message: "must name publish and/or subscribe"})
		}
		for _, act := range r.Actions {
			if act != ActionPublish && act != ActionSubscribe {
				fields = append(fields, FieldError{Field: fmt.Sprintf("resources[%d].actions", i), Message: "must be publish or subscribe"})
				break
			}
		}
	}
	if in.ClientID != "" && len(in.ClientID) > 256 {
		fields = append(fields, FieldError{Field: "client_id", Message: "must be at most 256 characters"})
	}
	if len(fields) > 0 {
		return DeviceToken{}, "", &ValidationError{Fields: fields}
	}
	now := time.Unix(s.now().Unix(), 0).UTC()
	t := DeviceToken{JTI: NewID("t"), InstanceID: instanceID, ClientID: in.ClientID, Resources: in.Resources,
		IssuedAt: now, ExpiresAt: now.Add(in.TTL.Truncate(time.Second))}
	var signed string
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := s.lockInstance(ctx, tx, orgID, instanceID); err != nil {
			return err
		}
		var kid string
		var stored []byte
		if err := tx.QueryRow(ctx, `SELECT kid, private_key FROM instance_token_keys WHERE instance_id = $1 ORDER BY created_at DESC LIMIT 1`,
			instanceID).Scan(&kid, &stored); err != nil {
			return fmt.Errorf("token key: %w", err)
		}
		seed, err := s.openSecret(stored, tokenKeyAAD(instanceID, kid))
		if err != nil {
			return fmt.Errorf("token key of %s: %w", instanceID, err)
		}
		claims := deviceJWTClaims{nodelink.DeviceTokenClaims{Issuer: "aerie", Audience: instanceID, ID: t.JTI, IssuedAt: now.Unix(),
			ExpiresAt: t.ExpiresAt.Unix(), ClientID: in.ClientID, Resources: linkResources(in.Resources)}}
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
		tok.Header["kid"] = kid
		if signed, err = tok.SignedString(ed25519.NewKeyFromSeed(seed)); err != nil {
			return fmt.Errorf("sign device token: %w", err)
		}
		res, _ := json.Marshal(in.Resources)
		if _, err := tx.Exec(ctx, `INSERT INTO device_tokens (jti, instance_id, client_id, resources, issued_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6)`,
			t.JTI, instanceID, in.ClientID, res, t.IssuedAt, t.ExpiresAt); err != nil {
			return fmt.Errorf("record device token: %w", err)
		}
		return s.audit(ctx, tx, a, orgID, "device_token.issue", t.JTI)
	})
	if err != nil {
		return DeviceToken{}, "", err
	}
	return t, signed, nil
}

// RevokeDeviceToken revokes a token by its jti; the node refuses it from
// then on and closes its live connections.
func (s *Service) RevokeDeviceToken(ctx context.Context, a Actor, orgID, instanceID, jti string) (DeviceToken, error) {
	var t DeviceToken
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		node, err := s.lockInstance(ctx, tx, orgID, instanceID)
		if err != nil {
			return err
		}
		var res []byte
		err = tx.QueryRow(ctx, `SELECT jti, instance_id, client_id, resources, issued_at, expires_at, revoked_at FROM device_tokens
			WHERE jti = $1 AND instance_id = $2 FOR UPDATE`, jti, instanceID).Scan(&t.JTI, &t.InstanceID, &t.ClientID, &res, &t.IssuedAt, &t.ExpiresAt, &t.RevokedAt)
		if err != nil {
			return fmt.Errorf("token %s: %w", jti, notFound(err))
		}
		_ = json.Unmarshal(res, &t.Resources)
		if t.RevokedAt != nil {
			return nil
		}
		now := s.nowUTC()
		t.RevokedAt = &now
		if _, err := tx.Exec(ctx, `UPDATE device_tokens SET revoked_at = $2 WHERE jti = $1`, jti, now); err != nil {
			return fmt.Errorf("revoke token: %w", err)
		}
		if t.ExpiresAt.After(now) {
			ev := nodelink.Event{Kind: nodelink.KindTokenRevoke, InstanceID: instanceID, RevokedToken: &nodelink.RevokedToken{JTI: jti, ExpiresAt: t.ExpiresAt}}
			if _, err := emit(ctx, tx, node, instanceID, ev); err != nil {
				return err
			}
		}
		return s.audit(ctx, tx, a, orgID, "device_token.revoke", jti)
	})
	return t, err
}

// ListDeviceTokens lists the instance's unexpired tokens by jti.
func (s *Service) ListDeviceTokens(ctx context.Context, orgID, instanceID string, p Page) ([]DeviceToken, string, error) {
	if _, err := s.Instance(ctx, orgID, instanceID); err != nil {
		return nil, "", err
	}
	rows, err := s.db.Query(ctx, `SELECT jti, instance_id, client_id, resources, issued_at, expires_at, revoked_at FROM device_tokens
		WHERE instance_id = $1 AND expires_at > $2 AND jti > $3 ORDER BY jti LIMIT $4`, instanceID, s.now(), p.After, p.limit()+1)
	if err != nil {
		return nil, "", fmt.Errorf("list tokens: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeviceToken, error) {
		var t DeviceToken
		var res []byte
		if err := r.Scan(&t.JTI, &t.InstanceID, &t.ClientID, &res, &t.IssuedAt, &t.ExpiresAt, &t.RevokedAt); err != nil {
			return t, err
		}
		return t, json.Unmarshal(res, &t.Resources)
	})
	if err != nil {
		return nil, "", fmt.Errorf("list tokens: %w", err)
	}
	list, next := trimPage(list, p.limit(), func(t DeviceToken) string { return t.JTI })
	return list, next, nil
}
