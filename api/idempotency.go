package api

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aeriemq/aerie/tenancy"
)

// IdempotencyTTL is how long a stored response is replayed.
const IdempotencyTTL = 24 * time.Hour

// IdempotencyKeyHeader names the header.
const IdempotencyKeyHeader = "Idempotency-Key"

// replayedHeader marks a replayed response.
const replayedHeader = "Idempotent-Replayed"

// IdempotencyStore keeps POST responses by (caller, key) in Postgres.
//
// Responses may hold secrets shown once (an API key's secret, tokens), so
// the stored body is encrypted (AES-GCM) with a key derived from the
// client's Idempotency-Key, and the key itself is stored only as a hash: the
// database alone cannot reveal them.
type IdempotencyStore struct {
	db  *pgxpool.Pool
	now func() time.Time
}

// NewIdempotencyStore returns a store over db.
func NewIdempotencyStore(db *pgxpool.Pool) *IdempotencyStore {
	return &IdempotencyStore{db: db, now: time.Now}
}

type storedResponse struct {
	Status  int         `json:"status"`
	Headers http.Header `json:"headers"`
	Body    []byte      `json:"body"`
}

func sealKey(idemKey, scope string) []byte {
	k, err := hkdf.Key(sha256.New, []byte(idemKey), []byte(scope), "aerie idempotency v1", 32)
	if err != nil {
		panic(err)
	}
	return k
}

func seal(key, plain []byte) []byte {
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, gcm.NonceSize())
	_, _ = rand.Read(nonce)
	return gcm.Seal(nonce, nonce, plain, nil)
}

func open(key, sealed []byte) ([]byte, error) {
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	if len(sealed) < gcm.NonceSize() {
		return nil, errors.New("stored response too short")
	}
	return gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], nil)
}

// Idempotency makes POSTs with an Idempotency-Key safe to retry: the first
// response (below 500) is stored for IdempotencyTTL and replayed for the
// same key and body; the same key with another body is 422. Keys are per
// caller (user or API key; anonymous calls share one space).
func (a *API) Idempotency(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get(IdempotencyKeyHeader)
		if r.Method != http.MethodPost || key == "" || a.idem == nil {
			next.ServeHTTP(w, r)
			return
		}
		if len(key) > 255 {
			a.WriteError(w, r, &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: IdempotencyKeyHeader, Message: "must be at most 255 characters"}}})
			return
		}
		body, err := readBody(w, r)
		if err != nil {
			a.WriteError(w, r, err)
			return
		}
		scope := "anon"
		if p := PrincipalFrom(r.Context()); p != nil {
			scope = "user:" + p.UserID
			if p.IsAPIKey() {
				scope = "key:" + p.APIKeyID
			}
		}
		h := sha256.New()
		h.Write([]byte(r.Method + " " + r.URL.Path + "\n"))
		h.Write(body)
		reqHash := h.Sum(nil)
		keyHash := sha256.Sum256([]byte(key))
		keyID := hex.EncodeToString(keyHash[:])

		stored, err := a.idem.begin(r.Context(), scope, keyID, reqHash)
		switch {
		case err != nil:
			a.WriteError(w, r, err)
			return
		case stored != nil:
			plain, err := open(sealKey(key, scope), stored)
			var resp storedResponse
			if err == nil {
				err = json.Unmarshal(plain, &resp)
			}
			if err != nil {
				a.WriteError(w, r, fmt.Errorf("replay stored response: %w", err))
				return
			}
			for k, v := range resp.Headers {
				w.Header()[k] = v
			}
			w.Header().Set(replayedHeader, "true")
			w.WriteHeader(resp.Status)
			_, _ = w.Write(resp.Body)
			return
		}
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		completed := false
		defer func() {
			if !completed {
				a.idem.abandon(context.WithoutCancel(r.Context()), scope, keyID)
			}
		}()
		next.ServeHTTP(rec, r)
		if rec.status >= 500 {
			return
		}
		hdr := http.Header{}
		for _, k := range []string{"Content-Type", "Location", "ETag", ConfigRevisionHeader} {
			if v := w.Header().Values(k); len(v) > 0 {
				hdr[k] = v
			}
		}
		plain, _ := json.Marshal(storedResponse{Status: rec.status, Headers: hdr, Body: rec.body.Bytes()})
		if err := a.idem.finish(context.WithoutCancel(r.Context()), scope, keyID, rec.status, seal(sealKey(key, scope), plain)); err != nil {
			a.log.ErrorContext(r.Context(), "storing idempotent response failed", "error", err)
			return
		}
		completed = true
	})
}

// begin claims (scope, key) for this request. It returns the sealed stored
// response to replay, or nil when the caller should run the request.
func (s *IdempotencyStore) begin(ctx context.Context, scope, key string, reqHash []byte) ([]byte, error) {
	for range 2 {
		tag, err := s.db.Exec(ctx, `INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING`,
			scope, key, reqHash, s.now())
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
		err = s.db.QueryRow(ctx, `SELECT request_hash, status, body, created_at FROM idempotency_keys WHERE scope = $1 AND key = $2`, scope, key).
			Scan(&hash, &status, &body, &created)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // abandoned meanwhile: claim again
		}
		if err != nil {
			return nil, fmt.Errorf("read idempotency key: %w", err)
		}
		if s.now().Sub(created) > IdempotencyTTL {
			if _, err := s.db.Exec(ctx, `DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND created_at = $3`, scope, key, created); err != nil {
				return nil, fmt.Errorf("expire idempotency key: %w", err)
			}
			continue
		}
		if !bytes.Equal(hash, reqHash) {
			return nil, ErrIdempotencyMismatch
		}
		if status == nil {
			return nil, ErrIdempotencyInFlight
		}
		return body, nil
	}
	return nil, ErrIdempotencyInFlight
}

func (s *IdempotencyStore) finish(ctx context.Context, scope, key string, status int, sealed []byte) error {
	_, err := s.db.Exec(ctx, `UPDATE idempotency_keys SET status = $3, body = $4 WHERE scope = $1 AND key = $2`, scope, key, status, sealed)
	return err
}

func (s *IdempotencyStore) abandon(ctx context.Context, scope, key string) {
	_, _ = s.db.Exec(ctx, `DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL`, scope, key)
}

// PurgeExpired deletes stored responses older than IdempotencyTTL.
func (s *IdempotencyStore) PurgeExpired(ctx context.Context) (int64, error) {
	tag, err := s.db.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < $1`, s.now().Add(-IdempotencyTTL))
	if err != nil {
		return 0, fmt.Errorf("purge idempotency keys: %w", err)
	}
	return tag.RowsAffected(), nil
}

// recorder writes through and keeps a copy of the response.
type recorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	body        bytes.Buffer
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}
