package tenancy

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aeriemq/aerie/nodelink"
)

// ConfigChannel is the Postgres NOTIFY channel announcing new config
// revisions; the payload is "<node_id>:<revision>", one per node of the
// cell the change is for.
const ConfigChannel = "aerie_config"

// emit appends ev to the config outbox of the cell of nodeID (the
// instance's node: every node of that cell applies it) under the next
// global revision, in the caller's transaction. Taking the revision locks
// the counter row until the transaction ends, so revisions become visible
// in order. The NOTIFYs (one per node of the cell) are delivered at commit.
func emit(ctx context.Context, tx pgx.Tx, nodeID, instanceID string, ev nodelink.Event) (int64, error) {
	var cellID string
	var nodes []string
	if err := tx.QueryRow(ctx, `SELECT n.cell_id, array_remove(array_agg(m.id ORDER BY m.id), NULL) FROM nodes n
		LEFT JOIN nodes m ON m.cell_id = n.cell_id AND m.revoked_at IS NULL WHERE n.id = $1 GROUP BY n.cell_id`, nodeID).Scan(&cellID, &nodes); err != nil {
		return 0, fmt.Errorf("cell of node %s: %w", nodeID, err)
	}
	var rev int64
	if err := tx.QueryRow(ctx, `UPDATE config_revision SET last = last + 1 RETURNING last`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("next config revision: %w", err)
	}
	ev.Revision = 0
	body, err := nodelink.EncodeEvent(ev)
	if err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO config_outbox (revision, cell_id, instance_id, event) VALUES ($1,$2,$3,$4)`,
		rev, cellID, instanceID, body); err != nil {
		return 0, fmt.Errorf("append config event: %w", err)
	}
	if len(nodes) > 0 {
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, n || ':' || $2) FROM unnest($3::text[]) n`, ConfigChannel, strconv.FormatInt(rev, 10), nodes); err != nil {
			return 0, fmt.Errorf("notify config event: %w", err)
		}
	}
	// The instance's latest change, for its sync state in the API.
	if ev.Kind == nodelink.KindInstanceDelete {
		_, err = tx.Exec(ctx, `DELETE FROM instance_config_revisions WHERE instance_id = $1`, instanceID)
	} else if instanceID != "" {
		_, err = tx.Exec(ctx, `INSERT INTO instance_config_revisions (instance_id, revision) VALUES ($1,$2)
			ON CONFLICT (instance_id) DO UPDATE SET revision = greatest(instance_config_revisions.revision, excluded.revision)`, instanceID, rev)
	}
	if err != nil {
		return 0, fmt.Errorf("instance config revision: %w", err)
	}
	for _, n := range nodes {
		// Read-your-writes waits for every node of the cell (the wait
		// skips the ones that are down).
		noteRevision(ctx, n, rev)
	}
	return rev, nil
}

// ParseConfigNotification splits a ConfigChannel payload.
func ParseConfigNotification(payload string) (nodeID string, rev int64, ok bool) {
	i := strings.LastIndexByte(payload, ':')
	if i <= 0 {
		return "", 0, false
	}
	rev, err := strconv.ParseInt(payload[i+1:], 10, 64)
	return payload[:i], rev, err == nil
}

// ConfigRevision is the latest config revision and the revision up to which
// the outbox has been pruned.
func (s *Service) ConfigRevision(ctx context.Context) (last, pruned int64, err error) {
	err = s.db.QueryRow(ctx, `SELECT last, pruned FROM config_revision`).Scan(&last, &pruned)
	if err != nil {
		return 0, 0, fmt.Errorf("config revision: %w", err)
	}
	return last, pruned, nil
}

// ConfigChanges returns the events of the node's cell after since, at most limit, in
// revision order. ErrSnapshotNeeded means since is older than the outbox
// keeps (or newer than anything issued): the node must take a snapshot.
func (s *Service) ConfigChanges(ctx context.Context, nodeID string, since int64, limit int) ([]nodelink.Event, error) {
	last, pruned, err := s.ConfigRevision(ctx)
	if err != nil {
		return nil, err
	}
	if since <= 0 || since < pruned || since > last {
		return nil, ErrSnapshotNeeded
	}
	rows, err := s.db.Query(ctx, `SELECT revision, event FROM config_outbox
		WHERE cell_id = (SELECT cell_id FROM nodes WHERE id = $1) AND revision > $2 ORDER BY revision LIMIT $3`, nodeID, since, limit)
	if err != nil {
		return nil, fmt.Errorf("config changes: %w", err)
	}
	defer rows.Close()
	var out []nodelink.Event
	for rows.Next() {
		var rev int64
		var body []byte
		if err := rows.Scan(&rev, &body); err != nil {
			return nil, fmt.Errorf("config changes: %w", err)
		}
		ev, err := nodelink.DecodeEvent(body)
		if err != nil {
			return nil, fmt.Errorf("config event %d: %w", rev, err)
		}
		ev.Revision = rev
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("config changes: %w", err)
	}
	return out, nil
}

// ErrSnapshotNeeded: the node's revision is outside what the outbox keeps.
var ErrSnapshotNeeded = nodelink.ErrSnapshotNeeded

// PruneConfigOutbox drops outbox rows older than keep; nodes behind them
// get a snapshot. It returns how many rows it dropped.
func (s *Service) PruneConfigOutbox(ctx context.Context, keep time.Duration) (int64, error) {
	var n int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var upto *int64
		if err := tx.QueryRow(ctx, `SELECT max(revision) FROM config_outbox WHERE created_at < $1`, s.now().Add(-keep)).Scan(&upto); err != nil {
			return fmt.Errorf("prune config outbox: %w", err)
		}
		if upto == nil {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE config_revision SET pruned = greatest(pruned, $1)`, *upto); err != nil {
			return fmt.Errorf("prune config outbox: %w", err)
		}
		tag, err := tx.Exec(ctx, `DELETE FROM config_outbox WHERE revision <= $1`, *upto)
		if err != nil {
			return fmt.Errorf("prune config outbox: %w", err)
		}
		n = tag.RowsAffected()
		return nil
	})
	return n, err
}

// ConfigSnapshot is everything placed on the node's cell, consistent at
// one revision (read in one repeatable-read transaction).
func (s *Service) ConfigSnapshot(ctx context.Context, nodeID string) (nodelink.Snapshot, error) {
	snap := nodelink.Snapshot{NodeID: nodeID, Instances: []nodelink.Instance{}}
	err := pgx.BeginTxFunc(ctx, s.db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT last FROM config_revision`).Scan(&snap.Revision); err != nil {
			return fmt.Errorf("snapshot revision: %w", err)
		}
		var cellID string
		if err := tx.QueryRow(ctx, `SELECT coalesce((SELECT cell_id FROM nodes WHERE id = $1), '')`, nodeID).Scan(&cellID); err != nil {
			return fmt.Errorf("snapshot cell: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT id, org_id, status, allow_anonymous, limited, quotas, strict_topics FROM instances WHERE cell_id = $1 ORDER BY id`, cellID)
		if err != nil {
			return fmt.Errorf("snapshot instances: %w", err)
		}
		byID := map[string]int{}
		for rows.Next() {
			var in nodelink.Instance
			var q []byte
			if err := rows.Scan(&in.ID, &in.OrgID, &in.Status, &in.AllowAnonymous, &in.Limited, &q, &in.StrictTopics); err != nil {
				rows.Close()
				return fmt.Errorf("snapshot instances: %w", err)
			}
			var qs Quotas
			if err := json.Unmarshal(q, &qs); err != nil {
				rows.Close()
				return fmt.Errorf("instance %s quotas: %w", in.ID, err)
			}
			in.Quotas = *linkQuotas(qs)
			byID[in.ID] = len(snap.Instances)
			snap.Instances = append(snap.Instances, in)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("snapshot instances: %w", err)
		}
		if err := fillChildren(ctx, tx, s.now(), `i.cell_id = $1`, cellID, snap.Instances, byID); err != nil {
			return err
		}
		if err := fillTopics(ctx, tx, `i.cell_id = $1`, cellID, snap.Instances, byID); err != nil {
			return err
		}
		return fillRules(ctx, tx, `i.cell_id = $1`, cellID, snap.Instances, byID)
	})
	return snap, err
}

// fillChildren loads credentials, ACL rules, token keys and live
// revocations of the instances matching where (on alias i) into list.
func fillChildren(ctx context.Context, tx pgx.Tx, now time.Time, where string, arg any, list []nodelink.Instance, byID map[string]int) error {
	err := fillEach(ctx, tx, "credentials", list, byID, func(in *nodelink.Instance) *[]nodelink.Credential { return &in.Credentials },
		func(rows pgx.Rows, iid *string, c *nodelink.Credential) error {
			return rows.Scan(iid, &c.ID, &c.Username, &c.SecretSHA256, &c.PasswordHash, &c.ClientIDPattern, &c.Enabled, &c.ExpiresAt)
		},
		`SELECT c.instance_id, c.id, c.username, c.secret_sha256, coalesce(c.password_hash, ''), c.client_id_pattern, c.enabled, c.expires_at
		FROM device_credentials c JOIN instances i ON i.id = c.instance_id WHERE `+where, arg)
	if err != nil {
		return err
	}
	err = fillEach(ctx, tx, "acl", list, byID, func(in *nodelink.Instance) *[]nodelink.ACLRule { return &in.ACL },
		func(rows pgx.Rows, iid *string, r *nodelink.ACLRule) error {
			return rows.Scan(iid, &r.ID, &r.Effect, &r.Action, &r.Filter, &r.CredentialID, &r.Position)
		},
		`SELECT r.instance_id, r.id, r.effect, r.action, r.filter, coalesce(r.credential_id, ''), r.position
		FROM acl_rules r JOIN instances i ON i.id = r.instance_id WHERE `+where+` ORDER BY r.instance_id, r.position, r.id`, arg)
	if err != nil {
		return err
	}
	err = fillEach(ctx, tx, "token keys", list, byID, func(in *nodelink.Instance) *[]nodelink.TokenKey { return &in.TokenKeys },
		func(rows pgx.Rows, iid *string, k *nodelink.TokenKey) error {
			k.Algorithm = "EdDSA"
			return rows.Scan(iid, &k.KID, &k.PublicKey)
		},
		`SELECT k.instance_id, k.kid, k.public_key FROM instance_token_keys k JOIN instances i ON i.id = k.instance_id WHERE `+where, arg)
	if err != nil {
		return err
	}
	return fillEach(ctx, tx, "revoked tokens", list, byID, func(in *nodelink.Instance) *[]nodelink.RevokedToken { return &in.RevokedTokens },
		func(rows pgx.Rows, iid *string, r *nodelink.RevokedToken) error {
			return rows.Scan(iid, &r.JTI, &r.ExpiresAt)
		},
		`SELECT t.instance_id, t.jti, t.expires_at FROM device_tokens t JOIN instances i ON i.id = t.instance_id
		WHERE t.revoked_at IS NOT NULL AND t.expires_at > $2 AND `+where, arg, now)
}

// fillEach runs query (whose first column is an instance ID) and appends
// each row, read by scan, to the slice field picks of that instance in list
// (rows of instances not in byID are skipped).
func fillEach[T any](ctx context.Context, tx pgx.Tx, what string, list []nodelink.Instance, byID map[string]int,
	field func(*nodelink.Instance) *[]T, scan func(rows pgx.Rows, iid *string, v *T) error, query string, args ...any) error {
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		var iid string
		var v T
		if err := scan(rows, &iid, &v); err != nil {
			return fmt.Errorf("snapshot %s: %w", what, err)
		}
		if k, ok := byID[iid]; ok {
			f := field(&list[k])
			*f = append(*f, v)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("snapshot %s: %w", what, err)
	}
	return nil
}
