package tenancy

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/aeriemq/aerie/internal/secretbox"
)

// errNoSecretKeys: a sealed secret was read by a service without keys.
var errNoSecretKeys = errors.New("the secret is sealed but no key-encryption key is configured (--secret-key-file)")

// tokenKeyAAD binds a sealed signing key to its row.
func tokenKeyAAD(instanceID, kid string) []byte {
	return []byte("instance_token_keys:" + instanceID + ":" + kid)
}

// sealSecret seals plain for storage (plain when no keys are configured).
func (s *Service) sealSecret(plain, aad []byte) []byte {
	if s.secrets == nil {
		return plain
	}
	return s.secrets.Seal(plain, aad)
}

// openSecret reverses sealSecret; a value stored before sealing was turned
// on is returned as is (SealSecrets seals it at start-up).
func (s *Service) openSecret(stored, aad []byte) ([]byte, error) {
	if !secretbox.Sealed(stored) {
		return stored, nil
	}
	if s.secrets == nil {
		return nil, errNoSecretKeys
	}
	return s.secrets.Open(stored, aad)
}

// SealSecrets (re)seals every stored secret that is plain or sealed with an
// older key-encryption key, with the current one; run at start-up, it
// completes a key rotation. It returns how many it sealed.
func (s *Service) SealSecrets(ctx context.Context) (int, error) {
	if s.secrets == nil {
		return 0, nil
	}
	n := 0
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT instance_id, kid, private_key FROM instance_token_keys FOR UPDATE`)
		if err != nil {
			return fmt.Errorf("seal secrets: %w", err)
		}
		type row struct {
			inst, kid string
			val       []byte
		}
		var todo []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.inst, &r.kid, &r.val); err != nil {
				rows.Close()
				return fmt.Errorf("seal secrets: %w", err)
			}
			if !s.secrets.Current(r.val) {
				todo = append(todo, r)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("seal secrets: %w", err)
		}
		for _, r := range todo {
			aad := tokenKeyAAD(r.inst, r.kid)
			plain, err := s.openSecret(r.val, aad)
			if err != nil {
				return fmt.Errorf("open the signing key %s of %s: %w", r.kid, r.inst, err)
			}
			if _, err := tx.Exec(ctx, `UPDATE instance_token_keys SET private_key = $3 WHERE instance_id = $1 AND kid = $2`,
				r.inst, r.kid, s.secrets.Seal(plain, aad)); err != nil {
				return fmt.Errorf("seal secrets: %w", err)
			}
			n++
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	m, err := s.sealRuleSecrets(ctx)
	return n + m, err
}
