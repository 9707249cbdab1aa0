package tenancy

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
)

// Session is what login and refresh hand out.
type Session struct {
	User         User
	AccessToken  string
	RefreshToken string
	ExpiresIn    time.Duration // of the access token
}

const (
	signingKeysSetting = "jwt_signing_keys"
	jwtIssuer          = "aerie"
)

// signingKey is one HS256 key; Current signs, the others still verify.
type signingKey struct {
	KID       string     `json:"kid"`
	Secret    []byte     `json:"secret"`
	CreatedAt time.Time  `json:"created_at"`
	RetiredAt *time.Time `json:"retired_at,omitempty"` // stopped signing; verifies until its tokens expired
}

type signingKeys struct {
	Current string       `json:"current"`
	Keys    []signingKey `json:"keys"`
}

func (k *signingKeys) find(kid string) *signingKey {
	for i := range k.Keys {
		if k.Keys[i].KID == kid {
			return &k.Keys[i]
		}
	}
	return nil
}

// loadKeys returns the signing keys, creating the first on first use. They
// are cached; reload forces a read (an unknown kid may be a key another
// process just rotated in), at most once a second.
func (s *Service) loadKeys(ctx context.Context, reload bool) (*signingKeys, error) {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	// Reload at least every minute, so a rotation made by another process is
	// picked up for signing too.
	age := time.Since(s.keysLoaded)
	if s.keys != nil && age < time.Minute && (!reload || age < time.Second) {
		return s.keys, nil
	}
	var ks signingKeys
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var raw []byte
		err := tx.QueryRow(ctx, `SELECT value FROM settings WHERE key = $1`, signingKeysSetting).Scan(&raw)
		if err == nil {
			return json.Unmarshal(raw, &ks)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		ks = signingKeys{}
		ks.add(s.now())
		raw, _ = json.Marshal(ks)
		_, err = tx.Exec(ctx, `INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, signingKeysSetting, raw)
		if err != nil {
			return err
		}
		// Another process may have won the race: read back what is stored.
		if err := tx.QueryRow(ctx, `SELECT value FROM settings WHERE key = $1`, signingKeysSetting).Scan(&raw); err != nil {
			return err
		}
		return json.Unmarshal(raw, &ks)
	})
	if err != nil {
		return nil, fmt.Errorf("load jwt signing keys: %w", err)
	}
	s.keys, s.keysLoaded = &ks, time.Now()
	return s.keys, nil
}

func (k *signingKeys) add(now time.Time) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		panic(err)
	}
	kid := "k" + randomToken(8)
	k.Keys = append(k.Keys, signingKey{KID: kid, Secret: secret, CreatedAt: now.UTC()})
	k.Current = kid
}

// RotateSigningKey makes a new key current. The retired key keeps verifying
// until every token it signed has expired, and is dropped by a later
// rotation after that.
func (s *Service) RotateSigningKey(ctx context.Context) (kid string, err error) {
	if _, err := s.loadKeys(ctx, false); err != nil {
		return "", err
	}
	var ks signingKeys
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		var raw []byte
		if err := tx.QueryRow(ctx, `SELECT value FROM settings WHERE key = $1 FOR UPDATE`, signingKeysSetting).Scan(&raw); err != nil {
			return err
		}
		if err := json.Unmarshal(raw, &ks); err != nil {
			return err
		}
		now := s.now().UTC()
		kept := ks.Keys[:0]
		for _, k := range ks.Keys {
			if k.KID == ks.Current {
				k.RetiredAt = &now
			}
			// Keep a retired key while tokens it signed may still be valid.
			if k.RetiredAt == nil || now.Sub(*k.RetiredAt) < s.accessTTL+time.Minute {
				kept = append(kept, k)
			}
		}
		ks.Keys = kept
		ks.add(now)
		raw, _ = json.Marshal(ks)
		_, err := tx.Exec(ctx, `UPDATE settings SET value = $2, updated_at = now() WHERE key = $1`, signingKeysSetting, raw)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("rotate jwt signing key: %w", err)
	}
	s.keysMu.Lock()
	s.keys, s.keysLoaded = &ks, time.Now()
	s.keysMu.Unlock()
	return ks.Current, nil
}

// IssueAccessToken signs an access JWT (HS256, kid header) for userID.
func (s *Service) IssueAccessToken(ctx context.Context, userID string) (string, error) {
	ks, err := s.loadKeys(ctx, false)
	if err != nil {
		return "", err
	}
	k := ks.find(ks.Current)
	now := s.now()
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Issuer: jwtIssuer, Subject: userID, ID: randomToken(10),
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(s.accessTTL)),
	})
	t.Header["kid"] = k.KID
	signed, err := t.SignedString(k.Secret)
	if err != nil {
		return "", fmt.Errorf("sign access token: %w", err)
	}
	return signed, nil
}

// VerifyAccessToken checks an access JWT (algorithm, kid, signature,
// issuer, expiry) and returns its user ID; any failure is ErrUnauthenticated.
func (s *Service) VerifyAccessToken(ctx context.Context, token string) (string, error) {
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("no kid")
		}
		ks, err := s.loadKeys(ctx, false)
		if err != nil {
			return nil, err
		}
		k := ks.find(kid)
		if k == nil {
			if ks, err = s.loadKeys(ctx, true); err != nil {
				return nil, err
			}
			if k = ks.find(kid); k == nil {
				return nil, errors.New("unknown kid")
			}
		}
		return k.Secret, nil
	}, jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithIssuer(jwtIssuer),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(s.now))
	if err != nil || claims.Subject == "" {
		return "", fmt.Errorf("%w: access token: %v", ErrUnauthenticated, err)
	}
	return claims.Subject, nil
}

// issueRefresh stores a new refresh token of family for userID.
func (s *Service) issueRefresh(ctx context.Context, q querier, userID, family string) (string, error) {
	tok := "aerr_" + randomToken(32)
	_, err := q.Exec(ctx, `INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, created_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6)`,
		NewID("rt"), userID, family, sha(tok), s.now(), s.now().Add(s.refreshTTL))
	if err != nil {
		return "", fmt.Errorf("store refresh token: %w", err)
	}
	return tok, nil
}

// Login checks the password and starts a session (a new refresh family).
func (s *Service) Login(ctx context.Context, email, password string) (Session, error) {
	u, err := s.CheckPassword(ctx, email, password)
	if err != nil {
		return Session{}, err
	}
	return s.startSession(ctx, u)
}

// StartSession issues tokens for a user who just proved who they are
// (sign-up, login).
func (s *Service) startSession(ctx context.Context, u User) (Session, error) {
	rt, err := s.issueRefresh(ctx, s.db, u.ID, NewID("fam"))
	if err != nil {
		return Session{}, err
	}
	at, err := s.IssueAccessToken(ctx, u.ID)
	if err != nil {
		return Session{}, err
	}
	return Session{User: u, AccessToken: at, RefreshToken: rt, ExpiresIn: s.accessTTL}, nil
}

// StartSession issues an access and a refresh token for userID, as after
// sign-up.
func (s *Service) StartSession(ctx context.Context, userID string) (Session, error) {
	u, err := s.User(ctx, userID)
	if err != nil {
		return Session{}, err
	}
	return s.startSession(ctx, u)
}

// Refresh rotates a refresh token: the presented one is spent and a new one
// of the same family returned. Presenting a spent token again revokes the
// whole family (it was stolen or replayed) and is ErrUnauthenticated.
func (s *Service) Refresh(ctx context.Context, token string) (Session, error) {
	var (
		userID, family string
		reused         bool
		newTok         string
	)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var id string
		var expires time.Time
		var used, revoked *time.Time
		err := tx.QueryRow(ctx, `SELECT id, user_id, family_id, expires_at, used_at, revoked_at FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE`,
			sha(token)).Scan(&id, &userID, &family, &expires, &used, &revoked)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrUnauthenticated
		}
		if err != nil {
			return fmt.Errorf("look up refresh token: %w", err)
		}
		if revoked != nil || !s.now().Before(expires) {
			return ErrUnauthenticated
		}
		if used != nil {
			reused = true
			_, err := tx.Exec(ctx, `UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL`, family, s.now())
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE refresh_tokens SET used_at = $2 WHERE id = $1`, id, s.now()); err != nil {
			return err
		}
		newTok, err = s.issueRefresh(ctx, tx, userID, family)
		return err
	})
	if err != nil {
		return Session{}, err
	}
	if reused {
		s.log.WarnContext(ctx, "refresh token reused; family revoked", "user", userID, "family", family)
		return Session{}, fmt.Errorf("%w: refresh token reused; every session of this login is revoked", ErrUnauthenticated)
	}
	u, err := s.User(ctx, userID)
	if err != nil {
		return Session{}, err
	}
	at, err := s.IssueAccessToken(ctx, userID)
	if err != nil {
		return Session{}, err
	}
	return Session{User: u, AccessToken: at, RefreshToken: newTok, ExpiresIn: s.accessTTL}, nil
}

// Logout revokes the refresh token's family. Unknown tokens are ignored.
func (s *Service) Logout(ctx context.Context, token string) error {
	_, err := s.db.Exec(ctx, `UPDATE refresh_tokens SET revoked_at = $2
		WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1) AND revoked_at IS NULL`, sha(token), s.now())
	if err != nil {
		return fmt.Errorf("revoke refresh tokens: %w", err)
	}
	return nil
}
