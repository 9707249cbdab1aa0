package tenancy

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aeriemq/aerie/internal/mailer"
)

// Org is a tenant. Role is the asking user's role in it, where known.
type Org struct {
	ID        string
	Name      string
	CreatedAt time.Time
	Role      Role
}

// Member is a user's membership of an org.
type Member struct {
	UserID    string
	Email     string
	Role      Role
	CreatedAt time.Time
}

// Invitation invites an email address into an org with a role.
type Invitation struct {
	ID        string
	OrgID     string
	Email     string
	Role      Role
	CreatedAt time.Time
	ExpiresAt time.Time
}

// ListOrgs lists the orgs userID is a member of, by ID.
func (s *Service) ListOrgs(ctx context.Context, userID string, p Page) ([]Org, string, error) {
	rows, err := s.db.Query(ctx, `SELECT o.id, o.name, o.created_at, m.role FROM orgs o JOIN org_members m ON m.org_id = o.id
		WHERE m.user_id = $1 AND o.id > $2 ORDER BY o.id LIMIT $3`, userID, p.After, p.limit()+1)
	if err != nil {
		return nil, "", fmt.Errorf("list orgs: %w", err)
	}
	orgs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Org, error) {
		var o Org
		err := r.Scan(&o.ID, &o.Name, &o.CreatedAt, &o.Role)
		return o, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list orgs: %w", err)
	}
	orgs, next := trimPage(orgs, p.limit(), func(o Org) string { return o.ID })
	return orgs, next, nil
}

// Org returns one org.
func (s *Service) Org(ctx context.Context, orgID string) (Org, error) {
	var o Org
	err := s.db.QueryRow(ctx, `SELECT id, name, created_at FROM orgs WHERE id = $1`, orgID).Scan(&o.ID, &o.Name, &o.CreatedAt)
	if err != nil {
		return Org{}, notFound(err)
	}
	return o, nil
}

// RenameOrg changes the org's name. When expectName is not nil the update
// applies only if the name is still *expectName (else ErrStale).
func (s *Service) RenameOrg(ctx context.Context, a Actor, orgID, name string, expectName *string) (Org, error) {
	n, err := checkOrgName(name)
	if err != nil {
		return Org{}, invalid("name", "must be 1 to 100 characters")
	}
	var o Org
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		var cur string
		if err := tx.QueryRow(ctx, `SELECT name FROM orgs WHERE id = $1 FOR UPDATE`, orgID).Scan(&cur); err != nil {
			return notFound(err)
		}
		if expectName != nil && cur != *expectName {
			return fmt.Errorf("%w: org %s was renamed meanwhile", ErrStale, orgID)
		}
		err := tx.QueryRow(ctx, `UPDATE orgs SET name = $2 WHERE id = $1 RETURNING id, name, created_at`, orgID, n).Scan(&o.ID, &o.Name, &o.CreatedAt)
		if err != nil {
			return notFound(err)
		}
		return s.audit(ctx, tx, a, orgID, "org.update", orgID)
	})
	return o, err
}

// MemberRole returns userID's role in orgID, or ErrNotFound when the user is
// not a member (the org is then invisible to them).
func (s *Service) MemberRole(ctx context.Context, orgID, userID string) (Role, error) {
	var r Role
	err := s.db.QueryRow(ctx, `SELECT role FROM org_members WHERE org_id = $1 AND user_id = $2`, orgID, userID).Scan(&r)
	if err != nil {
		return "", notFound(err)
	}
	return r, nil
}

// ListMembers lists an org's members by user ID.
func (s *Service) ListMembers(ctx context.Context, orgID string, p Page) ([]Member, string, error) {
	rows, err := s.db.Query(ctx, `SELECT m.user_id, u.email, m.role, m.created_at FROM org_members m JOIN users u ON u.id = m.user_id
		WHERE m.org_id = $1 AND m.user_id > $2 ORDER BY m.user_id LIMIT $3`, orgID, p.After, p.limit()+1)
	if err != nil {
		return nil, "", fmt.Errorf("list members: %w", err)
	}
	ms, err := pgx.CollectRows(rows, scanMember)
	if err != nil {
		return nil, "", fmt.Errorf("list members: %w", err)
	}
	ms, next := trimPage(ms, p.limit(), func(m Member) string { return m.UserID })
	return ms, next, nil
}

func scanMember(r pgx.CollectableRow) (Member, error) {
	var m Member
	err := r.Scan(&m.UserID, &m.Email, &m.Role, &m.CreatedAt)
	return m, err
}

// Member returns one member of an org.
func (s *Service) Member(ctx context.Context, orgID, userID string) (Member, error) {
	rows, err := s.db.Query(ctx, `SELECT m.user_id, u.email, m.role, m.created_at FROM org_members m JOIN users u ON u.id = m.user_id
		WHERE m.org_id = $1 AND m.user_id = $2`, orgID, userID)
	if err != nil {
		return Member{}, fmt.Errorf("get member: %w", err)
	}
	m, err := pgx.CollectExactlyOneRow(rows, scanMember)
	return m, notFound(err)
}

// lockOwners locks the org's member rows and counts its owners.
// lockMember locks the org's members (as lockOwners) and returns how many
// owners it has and the member's role (ErrNotFound for a non-member).
func lockMember(ctx context.Context, tx pgx.Tx, orgID, userID string) (int, Role, error) {
	owners, err := lockOwners(ctx, tx, orgID)
	if err != nil {
		return 0, "", fmt.Errorf("lock members: %w", err)
	}
	var cur Role
	if err := tx.QueryRow(ctx, `SELECT role FROM org_members WHERE org_id = $1 AND user_id = $2`, orgID, userID).Scan(&cur); err != nil {
		return 0, "", notFound(err)
	}
	return owners, cur, nil
}

func lockOwners(ctx context.Context, tx pgx.Tx, orgID string) (int, error) {
	rows, err := tx.Query(ctx, `SELECT role FROM org_members WHERE org_id = $1 FOR UPDATE`, orgID)
	if err != nil {
		return 0, err
	}
	roles, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range roles {
		if r == string(RoleOwner) {
			n++
		}
	}
	return n, nil
}

// ChangeRole sets a member's role. actorRole is the caller's role: nobody
// grants or changes a role above their own, and the last owner stays owner.
// When expectRole is set the change applies only if the member still has it
// (else ErrStale).
func (s *Service) ChangeRole(ctx context.Context, a Actor, actorRole Role, orgID, userID string, role, expectRole Role) (Member, error) {
	if !role.Valid() {
		return Member{}, invalid("role", "must be owner, admin or viewer")
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		owners, cur, err := lockMember(ctx, tx, orgID, userID)
		if err != nil {
			return err
		}
		if expectRole != "" && cur != expectRole {
			return fmt.Errorf("%w: the member's role changed meanwhile", ErrStale)
		}
		if role.Rank() > actorRole.Rank() || cur.Rank() > actorRole.Rank() {
			return fmt.Errorf("%w: cannot change a role above your own", ErrForbidden)
		}
		if cur == RoleOwner && role != RoleOwner && owners <= 1 {
			return ErrLastOwner
		}
		if _, err := tx.Exec(ctx, `UPDATE org_members SET role = $3 WHERE org_id = $1 AND user_id = $2`, orgID, userID, role); err != nil {
			return fmt.Errorf("update role: %w", err)
		}
		return s.audit(ctx, tx, a, orgID, "member.update", userID)
	})
	if err != nil {
		return Member{}, err
	}
	return s.Member(ctx, orgID, userID)
}

// RemoveMember removes a member; the last owner cannot be removed, and
// only an owner removes an owner.
func (s *Service) RemoveMember(ctx context.Context, a Actor, actorRole Role, orgID, userID string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		owners, cur, err := lockMember(ctx, tx, orgID, userID)
		if err != nil {
			return err
		}
		if cur.Rank() > actorRole.Rank() {
			return fmt.Errorf("%w: cannot remove a member above your own role", ErrForbidden)
		}
		if cur == RoleOwner && owners <= 1 {
			return ErrLastOwner
		}
		if _, err := tx.Exec(ctx, `DELETE FROM org_members WHERE org_id = $1 AND user_id = $2`, orgID, userID); err != nil {
			return fmt.Errorf("remove member: %w", err)
		}
		return s.audit(ctx, tx, a, orgID, "member.delete", userID)
	})
}

// Invite mails an invitation into orgID with role (not above actorRole).
func (s *Service) Invite(ctx context.Context, a Actor, actorRole Role, orgID, email string, role Role) (Invitation, error) {
	var fields []FieldError
	e, err := NormalizeEmail(email)
	collect(&fields, err)
	if !role.Valid() {
		fields = append(fields, FieldError{Field: "role", Message: "must be owner, admin or viewer"})
	}
	if len(fields) > 0 {
		return Invitation{}, &ValidationError{Fields: fields}
	}
	if role.Rank() > actorRole.Rank() {
		return Invitation{}, fmt.Errorf("%w: cannot invite with a role above your own", ErrForbidden)
	}
	now := s.nowUTC()
	inv := Invitation{ID: NewID("inv"), OrgID: orgID, Email: e, Role: role, CreatedAt: now, ExpiresAt: now.Add(7 * 24 * time.Hour)}
	tok := "aeri_" + randomToken(32)
	var orgName string
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT name FROM orgs WHERE id = $1`, orgID).Scan(&orgName); err != nil {
			return notFound(err)
		}
		var member bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM org_members m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 AND u.email = $2)`, orgID, e).Scan(&member); err != nil {
			return err
		}
		if member {
			return fmt.Errorf("%w: %s is already a member", ErrConflict, e)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO invitations (id, org_id, email, role, token_hash, invited_by, created_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`,
			inv.ID, orgID, e, role, sha(tok), a.UserID, now, inv.ExpiresAt); err != nil {
			return fmt.Errorf("store invitation: %w", err)
		}
		return s.audit(ctx, tx, a, orgID, "member.invite", e)
	})
	if err != nil {
		return Invitation{}, err
	}
	s.send(ctx, mailer.Message{To: e, Subject: "You are invited to " + orgName + " on Aerie",
		Body: "Accept the invitation: " + s.baseURL + "/invitations/accept?token=" + url.QueryEscape(tok) + "\n"})
	return inv, nil
}

// AcceptInvitation makes userID a member with the invitation's role. The
// user's email must be the invited one.
func (s *Service) AcceptInvitation(ctx context.Context, a Actor, token string) (Org, error) {
	var orgID string
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var id, email string
		var role Role
		err := tx.QueryRow(ctx, `SELECT id, org_id, email, role FROM invitations
			WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > $2 FOR UPDATE`, sha(token), s.now()).Scan(&id, &orgID, &email, &role)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: invitation is invalid, used or expired", ErrNotFound)
		}
		if err != nil {
			return err
		}
		var userEmail string
		if err := tx.QueryRow(ctx, `SELECT email FROM users WHERE id = $1`, a.UserID).Scan(&userEmail); err != nil {
			return notFound(err)
		}
		if userEmail != email {
			return fmt.Errorf("%w: invitation is invalid, used or expired", ErrNotFound)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO org_members (org_id, user_id, role, created_at) VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING`,
			orgID, a.UserID, role, s.now()); err != nil {
			return fmt.Errorf("add member: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE invitations SET accepted_at = $2 WHERE id = $1`, id, s.now()); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, orgID, "member.join", a.UserID)
	})
	if err != nil {
		return Org{}, err
	}
	o, err := s.Org(ctx, orgID)
	if err != nil {
		return Org{}, err
	}
	o.Role, err = s.MemberRole(ctx, orgID, a.UserID)
	return o, err
}

// OrgCreatedAt is when the org was created; false when there is none (for
// billing, which starts a subscription then).
func (s *Service) OrgCreatedAt(ctx context.Context, orgID string) (time.Time, bool, error) {
	var created time.Time
	err := s.db.QueryRow(ctx, `SELECT created_at FROM orgs WHERE id = $1`, orgID).Scan(&created)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("org created: %w", err)
	}
	return created, true, nil
}

// OrgsCreatedBefore lists the IDs of the orgs created before t, in ID order
// (for billing, which invoices each at the end of a period).
func (s *Service) OrgsCreatedBefore(ctx context.Context, t time.Time) ([]string, error) {
	rows, err := s.db.Query(ctx, `SELECT id FROM orgs WHERE created_at < $1 ORDER BY id`, t)
	if err != nil {
		return nil, fmt.Errorf("orgs created before: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("orgs created before: %w", err)
	}
	return ids, nil
}
