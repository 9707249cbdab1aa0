package tenancy

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
)

// ConsoleKey returns the key that signs the console's CSRF tokens, created
// once and kept in the settings table so every control-plane process (and
// every restart) accepts the same forms.
func (s *Service) ConsoleKey(ctx context.Context) ([]byte, error) {
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	if _, err := s.db.Exec(ctx, `INSERT INTO settings (key, value) VALUES ('console_csrf_key', to_jsonb($1::text))
		ON CONFLICT (key) DO NOTHING`, base64.StdEncoding.EncodeToString(fresh)); err != nil {
		return nil, fmt.Errorf("console key: %w", err)
	}
	var enc string
	if err := s.db.QueryRow(ctx, `SELECT value #>> '{}' FROM settings WHERE key = 'console_csrf_key'`).Scan(&enc); err != nil {
		return nil, fmt.Errorf("console key: %w", err)
	}
	return base64.StdEncoding.DecodeString(enc)
}
