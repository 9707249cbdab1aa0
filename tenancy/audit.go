package tenancy

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// AuditEvent is one recorded mutation.
type AuditEvent struct {
	ID         string
	OrgID      string
	ActorType  string // "user" or "api_key"
	ActorID    string
	Action     string // e.g. "api_key.create"
	Target     string
	ClientAddr string
	RequestID  string
	CreatedAt  time.Time

	seq int64
}

// AuditFilter narrows an audit listing; empty fields match everything.
type AuditFilter struct {
	Action  string
	ActorID string
}

// ListAuditEvents lists an org's audit events, newest first (in commit
// sequence). Page.After is the key returned for the previous page.
func (s *Service) ListAuditEvents(ctx context.Context, orgID string, f AuditFilter, p Page) ([]AuditEvent, string, error) {
	var before int64 = math.MaxInt64
	if p.After != "" {
		n, err := strconv.ParseInt(p.After, 10, 64)
		if err != nil || n <= 0 {
			return nil, "", invalid("cursor", "is not a cursor this API returned")
		}
		before = n
	}
	rows, err := s.db.Query(ctx, `SELECT seq, id, org_id, actor_type, actor_id, action, target, client_addr, request_id, created_at
		FROM audit_events WHERE org_id = $1 AND seq < $2 AND ($3 = '' OR action = $3) AND ($4 = '' OR actor_id = $4)
		ORDER BY seq DESC LIMIT $5`, orgID, before, f.Action, f.ActorID, p.limit()+1)
	if err != nil {
		return nil, "", fmt.Errorf("list audit events: %w", err)
	}
	evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEvent, error) {
		var e AuditEvent
		err := r.Scan(&e.seq, &e.ID, &e.OrgID, &e.ActorType, &e.ActorID, &e.Action, &e.Target, &e.ClientAddr, &e.RequestID, &e.CreatedAt)
		return e, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list audit events: %w", err)
	}
	evs, next := trimPage(evs, p.limit(), func(e AuditEvent) string { return strconv.FormatInt(e.seq, 10) })
	return evs, next, nil
}
