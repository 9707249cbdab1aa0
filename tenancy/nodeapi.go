package tenancy

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
)

// SetNodeAPIURL records where the node serves its API (from its
// heartbeat); only http(s) URLs are kept.
func (s *Service) SetNodeAPIURL(ctx context.Context, nodeID, apiURL string) error {
	u, err := url.Parse(apiURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid("api_url", "must be an http(s) URL")
	}
	if _, err := s.db.Exec(ctx, `UPDATE nodes SET api_url = $2 WHERE id = $1 AND api_url <> $2`, nodeID, apiURL); err != nil {
		return fmt.Errorf("node api url: %w", err)
	}
	return nil
}

// NodeAPITarget returns the node's API URL and its token hash (from which
// the node API secret is derived); ErrNodeUnavailable when the node has
// reported no API URL or is revoked.
func (s *Service) NodeAPITarget(ctx context.Context, nodeID string) (string, []byte, error) {
	var u string
	var hash []byte
	err := s.db.QueryRow(ctx, `SELECT api_url, token_hash FROM nodes WHERE id = $1 AND revoked_at IS NULL`, nodeID).Scan(&u, &hash)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && u == "" {
		return "", nil, fmt.Errorf("%w: node %s has no API URL", ErrNodeUnavailable, nodeID)
	}
	if err != nil {
		return "", nil, fmt.Errorf("node api target: %w", err)
	}
	return u, hash, nil
}
