// Package idempotency stores the responses of requests made with an
// Idempotency-Key, so a retried request is answered with the first
// response instead of running again. It owns the idempotency_keys table and
// knows nothing of HTTP: the api package's Idempotency middleware decides
// what a scope, a request hash and a response are.
//
// Responses may hold secrets shown once (an API key's secret, tokens), so a
// stored body is sealed (AES-GCM) with a key derived from the client's
// Idempotency-Key, and the key itself is stored only as a hash (KeyID): the
// database alone cannot reveal them.
package idempotency

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TTL is how long a stored response is replayed.
const TTL = 24 * time.Hour

// Errors of a claim.
var (
	// ErrMismatch: the key was used before with another request.
	ErrMismatch = errors.New("idempotency key reused with a different request")
	// ErrInFlight: the first request with this key is still running.
	ErrInFlight = errors.New("a request with this idempotency key is in progress")
)

// Store keeps sealed responses by (scope, key ID) in Postgres.
type Store struct {
	db  *pgxpool.Pool
	now func() time.Time
}

// NewStore returns a store over db.
func NewStore(db *pgxpool.Pool) *Store {
	return &Store{db: db, now: time.Now}
}

// KeyID is what is stored of a client's Idempotency-Key: its SHA-256, hex.
func KeyID(idemKey string) string {
	h := sha256.Sum256([]byte(idemKey))
	return hex.EncodeToString(h[:])
}

func sealKey(idemKey, scope string) []byte {
	k, err := hkdf.Key(sha256.New, []byte(idemKey), []byte(scope), "aerie idempotency v1", 32)
	if err != nil {
		panic(err)
	}
	return k
}

// Seal encrypts a response for storage with a key derived from the
// client's Idempotency-Key and the scope.
func Seal(idemKey, scope string, plain []byte) []byte {
	block, _ := aes.NewCipher(sealKey(idemKey, scope))
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, gcm.NonceSize())
	_, _ = rand.Read(nonce)
	return gcm.Seal(nonce, nonce, plain, nil)
}

// Open decrypts what Seal sealed with the same key and scope.
func Open(idemKey, scope string, sealed []byte) ([]byte, error) {
	block, _ := aes.NewCipher(sealKey(idemKey, scope))
	gcm, _ := cipher.NewGCM(block)
	if len(sealed) < gcm.NonceSize() {
		return nil, errors.New("stored response too short")
	}
	return gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], nil)
}

// Begin claims (scope, keyID) for a request whose hash is reqHash. It
// returns the sealed stored response to replay, or nil when the caller
// should run the request (and then Finish or Abandon the claim). The same
// key with another request is ErrMismatch; a claim still running is
// ErrInFlight.
func (s *Store) Begin(ctx context.Context, scope, keyID string, reqHash []byte) ([]byte, error) {
	for range 2 {
		tag, err := s.db.Exec(ctx, `INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING`,
			scope, keyID, reqHash, s.now())
		if err != nil {
			return nil, fmt.Errorf("claim idempotency key: %w", err)
		}
		if tag.RowsAffected() == 1 {
			// Now and then, drop expired rows so the table stays small.
			if mrand.IntN(512) == 0 {
				if _, err := s.PurgeExpired(ctx); err != nil {
					return nil, err
				}
			}
			return nil, nil
		}
		var hash, body []byte
		var status *int
		var created time.Time
		err = s.db.QueryRow(ctx, `SELECT request_hash, status, body, created_at FROM idempotency_keys WHERE scope = $1 AND key = $2`, scope, keyID).
			Scan(&hash, &status, &body, &created)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // abandoned meanwhile: claim again
		}
		if err != nil {
			return nil, fmt.Errorf("read idempotency key: %w", err)
		}
		if s.now().Sub(created) > TTL {
			if _, err := s.db.Exec(ctx, `DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND created_at = $3`, scope, keyID, created); err != nil {
				return nil, fmt.Errorf("expire idempotency key: %w", err)
			}
			continue
		}
		if !bytes.Equal(hash, reqHash) {
			return nil, ErrMismatch
		}
		if status == nil {
			return nil, ErrInFlight
		}
		return body, nil
	}
	return nil, ErrInFlight
}

// Finish stores the sealed response of a claimed request.
func (s *Store) Finish(ctx context.Context, scope, keyID string, status int, sealed []byte) error {
	_, err := s.db.Exec(ctx, `UPDATE idempotency_keys SET status = $3, body = $4 WHERE scope = $1 AND key = $2`, scope, keyID, status, sealed)
	if err != nil {
		return fmt.Errorf("store idempotent response: %w", err)
	}
	return nil
}

// Abandon releases a claim whose request stored no response, so a retry
// runs again.
func (s *Store) Abandon(ctx context.Context, scope, keyID string) {
	_, _ = s.db.Exec(ctx, `DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL`, scope, keyID)
}

// PurgeExpired deletes stored responses older than TTL.
func (s *Store) PurgeExpired(ctx context.Context) (int64, error) {
	tag, err := s.db.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < $1`, s.now().Add(-TTL))
	if err != nil {
		return 0, fmt.Errorf("purge idempotency keys: %w", err)
	}
	return tag.RowsAffected(), nil
}
