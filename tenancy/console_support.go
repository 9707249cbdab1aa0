package tenancy

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Authorize returns userID's role in orgID when that role may act with scope
// need there: the rule the API applies to a signed-in user (a role's
// MaxScope must reach the call's scope). A user who is not a member gets
// ErrNotFound (the org is invisible to them), a member whose role is too low
// ErrForbidden. The console calls it before every org-scoped service call.
func (s *Service) Authorize(ctx context.Context, orgID, userID string, need Scope) (Role, error) {
	role, err := s.MemberRole(ctx, orgID, userID)
	if err != nil {
		return "", fmt.Errorf("org %s: %w", orgID, err)
	}
	if role.MaxScope().Rank() < need.Rank() {
		return role, fmt.Errorf("%w: this needs scope %q and a %s has %q", ErrForbidden, need, role, role.MaxScope())
	}
	return role, nil
}

// ListInvitations returns the org's pending invitations (not accepted, not
// expired), oldest first.
func (s *Service) ListInvitations(ctx context.Context, orgID string, p Page) ([]Invitation, string, error) {
	rows, err := s.db.Query(ctx, `SELECT id, org_id, email, role, created_at, expires_at FROM invitations
		WHERE org_id = $1 AND accepted_at IS NULL AND expires_at > $2 AND id > $3 ORDER BY id LIMIT $4`,
		orgID, s.now(), p.After, p.limit()+1)
	if err != nil {
		return nil, "", fmt.Errorf("list invitations: %w", err)
	}
	invs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Invitation, error) {
		var inv Invitation
		err := r.Scan(&inv.ID, &inv.OrgID, &inv.Email, &inv.Role, &inv.CreatedAt, &inv.ExpiresAt)
		return inv, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list invitations: %w", err)
	}
	invs, next := trimPage(invs, p.limit(), func(i Invitation) string { return i.ID })
	return invs, next, nil
}
