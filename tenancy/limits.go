package tenancy

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/aeriemq/aerie/internal/mailer"
	"github.com/aeriemq/aerie/nodelink"
)

// SetOrgLimit puts every instance of the org under a billing limit
// (LimitThrottle or LimitSuspend), or lifts it (""), and
// pushes the change to the nodes. Quotas and status are left as the user
// set them, so lifting the limit restores exactly that. When a limit starts
// the org's owners are mailed why (reason). It returns how many instances
// changed.
func (s *Service) SetOrgLimit(ctx context.Context, orgID, limit, reason string) (int, error) {
	if limit != "" && limit != LimitThrottle && limit != LimitSuspend {
		return 0, invalid("limit", "must be throttle, suspend or empty")
	}
	type row struct {
		id, node, status, was string
		anon                  bool
	}
	var changed []row
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, node_id, status, allow_anonymous, limited FROM instances
			WHERE org_id = $1 AND limited <> $2 ORDER BY id FOR UPDATE`, orgID, limit)
		if err != nil {
			return fmt.Errorf("org limit: %w", err)
		}
		changed, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.id, &x.node, &x.status, &x.anon, &x.was)
			return x, err
		})
		if err != nil {
			return fmt.Errorf("org limit: %w", err)
		}
		for _, r := range changed {
			if _, err := tx.Exec(ctx, `UPDATE instances SET limited = $2 WHERE id = $1`, r.id, limit); err != nil {
				return fmt.Errorf("org limit: %w", err)
			}
			ev := nodelink.Event{Kind: nodelink.KindInstanceStatus, InstanceID: r.id,
				Instance: &nodelink.Instance{ID: r.id, Status: r.status, AllowAnonymous: r.anon, Limited: limit}}
			if _, err := emit(ctx, tx, r.node, r.id, ev); err != nil {
				return err
			}
		}
		if len(changed) == 0 {
			return nil
		}
		action := "org.limit." + limit
		if limit == "" {
			action = "org.limit.lifted"
		}
		return s.audit(ctx, tx, Actor{UserID: "system"}, orgID, action, orgID)
	})
	if err != nil || len(changed) == 0 || limit == "" {
		return len(changed), err
	}
	s.mailOwners(ctx, orgID, "Your Aerie instances are "+map[string]string{LimitThrottle: "throttled", LimitSuspend: "suspended"}[limit],
		fmt.Sprintf("%s\n\nYour organisation's MQTT instances are %s until the next billing period, an upgrade, or a higher spend limit.\n",
			reason, map[string]string{LimitThrottle: "throttled to one message a second", LimitSuspend: "suspended: devices cannot connect"}[limit]))
	return len(changed), nil
}

// mailOwners mails every owner of the org.
func (s *Service) mailOwners(ctx context.Context, orgID, subject, body string) {
	rows, err := s.db.Query(ctx, `SELECT u.email FROM org_members m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 AND m.role = 'owner'`, orgID)
	if err != nil {
		s.log.Error("owner emails", "org", orgID, "error", err)
		return
	}
	emails, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		s.log.Error("owner emails", "org", orgID, "error", err)
		return
	}
	for _, e := range emails {
		s.send(ctx, mailer.Message{To: e, Subject: subject, Body: body})
	}
}
