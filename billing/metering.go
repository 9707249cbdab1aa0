package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// UsageReport is one node's per-instance usage for the window [From, To),
// counted once per (NodeID, Seq).
type UsageReport struct {
	NodeID    string
	Seq       int64
	From, To  time.Time
	Instances []InstanceUsage
}

// InstanceUsage is one instance's counters in a UsageReport: deltas over
// the window, and gauges (Connections, Subscriptions, Retained,
// StoredBytes) at its end.
type InstanceUsage struct {
	InstanceID                      string
	Connects, AuthFailures          int64
	MessagesIn, MessagesOut         int64
	BytesIn, BytesOut               int64
	MessageUnitsIn, MessageUnitsOut int64 // one per started 5 KiB of payload
	ConnectionSeconds               int64
	Drops                           map[string]int64 // by reason: acl, quota, queue_full, too_large, expired
	Connections, Subscriptions      int64
	Retained, StoredBytes           int64
	// MessagesForwarded counts messages delivered by forwarding rules
	// (also counted in MessagesOut, BytesOut and MessageUnitsOut).
	MessagesForwarded int64
	TopicStoredBytes  map[string]int64 // gauge by provisioned topic ID (topicstorage.go)
}

// Bucket steps and how long each is kept.
var steps = []struct {
	Step time.Duration
	Keep time.Duration
}{
	{10 * time.Second, 24 * time.Hour},
	{time.Minute, 30 * 24 * time.Hour},
	{time.Hour, 397 * 24 * time.Hour}, // 13 months
}

// ErrInvalidReport is returned for a report that cannot be counted.
var ErrInvalidReport = errors.New("invalid usage report")

// OrgResolver names the org of each instance (the tenancy service). An
// instance it does not know is still metered, without an org.
type OrgResolver interface {
	InstanceOrgs(ctx context.Context, instanceIDs []string) (map[string]string, error)
}

// Meter ingests usage reports and answers usage queries.
type Meter struct {
	db   *pgxpool.Pool
	orgs OrgResolver
	log  *slog.Logger
}

// NewMeter returns a Meter over db.
func NewMeter(db *pgxpool.Pool, orgs OrgResolver, log *slog.Logger) *Meter {
	if log == nil {
		log = slog.Default()
	}
	return &Meter{db: db, orgs: orgs, log: log}
}

// dropColumns maps drop reasons to their bucket columns.
var dropColumns = map[string]string{
	"acl":        "drops_acl",
	"quota":      "drops_quota",
	"queue_full": "drops_queue_full",
	"too_large":  "drops_too_large",
	"expired":    "drops_expired",
}

// Ingest counts a report exactly once: a (node, seq) seen before is
// accepted and ignored (duplicate reports true). Deltas land in the buckets
// of the window they describe, however late they arrive.
func (m *Meter) Ingest(ctx context.Context, r UsageReport) (duplicate bool, err error) {
	if err := validateReport(r); err != nil {
		return false, err
	}
	ids := make([]string, 0, len(r.Instances))
	for _, u := range r.Instances {
		ids = append(ids, u.InstanceID)
	}
	orgs, err := m.orgs.InstanceOrgs(ctx, ids)
	if err != nil {
		return false, fmt.Errorf("look up instance orgs: %w", err)
	}
	tx, err := m.db.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return false, fmt.Errorf("ingest usage: %w", err)
	}
	defer tx.Rollback(ctx)
	tag, err := tx.Exec(ctx, `INSERT INTO usage_reports (node_id, seq, window_start, window_end)
		VALUES ($1, $2, $3, $4) ON CONFLICT (node_id, seq) DO NOTHING`, r.NodeID, r.Seq, r.From, r.To)
	if err != nil {
		return false, fmt.Errorf("record usage report: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return true, nil
	}
	// The window's start decides the bucket: a report never spans more than
	// one 10 s bucket by construction, and if it does its counts still land
	// in one bucket of the period it describes.
	batch := &pgx.Batch{}
	for _, u := range r.Instances {
		drops := map[string]int64{}
		for reason, n := range u.Drops {
			col, ok := dropColumns[reason]
			if !ok {
				col = "drops_other"
			}
			drops[col] += n
		}
		var org *string
		if o, ok := orgs[u.InstanceID]; ok {
			org = &o
		}
		for _, s := range steps {
			start := r.From.UTC().Truncate(s.Step)
			batch.Queue(upsertBucket, u.InstanceID, org, int(s.Step/time.Second), start,
				u.Connects, u.AuthFailures, u.MessagesIn, u.MessagesOut, u.BytesIn, u.BytesOut,
				u.MessageUnitsIn, u.MessageUnitsOut, u.ConnectionSeconds,
				drops["drops_acl"], drops["drops_quota"], drops["drops_queue_full"], drops["drops_too_large"],
				drops["drops_expired"], drops["drops_other"],
				u.Connections, u.Subscriptions, u.Retained, u.StoredBytes, r.To, u.MessagesForwarded)
		}
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return false, fmt.Errorf("roll up usage: %w", err)
	}
	if err := recordTopicStorage(ctx, tx, r, orgs); err != nil {
		return false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("commit usage: %w", err)
	}
	return false, nil
}

const upsertBucket = `
INSERT INTO usage_buckets AS b (instance_id, org_id, step_seconds, bucket_start,
	connects, auth_failures, messages_in, messages_out, bytes_in, bytes_out,
	message_units_in, message_units_out, connection_seconds,
	drops_acl, drops_quota, drops_queue_full, drops_too_large, drops_expired, drops_other,
	connections, connections_max, subscriptions, retained, stored_bytes, gauge_at, messages_forwarded)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
	$20, $20, $21, $22, $23, $24, $25)
ON CONFLICT (instance_id, step_seconds, bucket_start) DO UPDATE SET
	org_id             = COALESCE(b.org_id, EXCLUDED.org_id),
	connects           = b.connects + EXCLUDED.connects,
	auth_failures      = b.auth_failures + EXCLUDED.auth_failures,
	messages_in        = b.messages_in + EXCLUDED.messages_in,
	messages_out       = b.messages_out + EXCLUDED.messages_out,
	bytes_in           = b.bytes_in + EXCLUDED.bytes_in,
	bytes_out          = b.bytes_out + EXCLUDED.bytes_out,
	message_units_in   = b.message_units_in + EXCLUDED.message_units_in,
	message_units_out  = b.message_units_out + EXCLUDED.message_units_out,
	connection_seconds = b.connection_seconds + EXCLUDED.connection_seconds,
	drops_acl          = b.drops_acl + EXCLUDED.drops_acl,
	drops_quota        = b.drops_quota + EXCLUDED.drops_quota,
	drops_queue_full   = b.drops_queue_full + EXCLUDED.drops_queue_full,
	drops_too_large    = b.drops_too_large + EXCLUDED.drops_too_large,
	drops_expired      = b.drops_expired + EXCLUDED.drops_expired,
	drops_other        = b.drops_other + EXCLUDED.drops_other,
	messages_forwarded = b.messages_forwarded + EXCLUDED.messages_forwarded,
	connections_max    = GREATEST(b.connections_max, EXCLUDED.connections_max),
	connections        = CASE WHEN b.gauge_at IS NULL OR EXCLUDED.gauge_at >= b.gauge_at THEN EXCLUDED.connections ELSE b.connections END,
	subscriptions      = CASE WHEN b.gauge_at IS NULL OR EXCLUDED.gauge_at >= b.gauge_at THEN EXCLUDED.subscriptions ELSE b.subscriptions END,
	retained           = CASE WHEN b.gauge_at IS NULL OR EXCLUDED.gauge_at >= b.gauge_at THEN EXCLUDED.retained ELSE b.retained END,
	stored_bytes       = CASE WHEN b.gauge_at IS NULL OR EXCLUDED.gauge_at >= b.gauge_at THEN EXCLUDED.stored_bytes ELSE b.stored_bytes END,
	gauge_at           = GREATEST(b.gauge_at, EXCLUDED.gauge_at)`

func validateReport(r UsageReport) error {
	switch {
	case r.NodeID == "":
		return fmt.Errorf("%w: node_id is required", ErrInvalidReport)
	case r.Seq <= 0:
		return fmt.Errorf("%w: seq must be positive", ErrInvalidReport)
	case r.From.IsZero() || r.To.Before(r.From):
		return fmt.Errorf("%w: window [from, to) is empty or reversed", ErrInvalidReport)
	}
	for _, u := range r.Instances {
		if u.InstanceID == "" {
			return fmt.Errorf("%w: instance_id is required", ErrInvalidReport)
		}
		for _, v := range []int64{u.Connects, u.AuthFailures, u.MessagesIn, u.MessagesOut, u.BytesIn, u.BytesOut,
			u.MessageUnitsIn, u.MessageUnitsOut, u.ConnectionSeconds, u.Connections, u.Subscriptions, u.Retained, u.StoredBytes, u.MessagesForwarded} {
			if v < 0 {
				return fmt.Errorf("%w: negative counter for instance %s", ErrInvalidReport, u.InstanceID)
			}
		}
		for reason, n := range u.Drops {
			if n < 0 {
				return fmt.Errorf("%w: negative drop count %q for instance %s", ErrInvalidReport, reason, u.InstanceID)
			}
		}
		if err := validateTopicStorage(u); err != nil {
			return err
		}
	}
	return nil
}

// Prune deletes buckets past their retention and report receipts older than
// the longest time a node may resend a report (a day).
func (m *Meter) Prune(ctx context.Context, now time.Time) (int64, error) {
	var total int64
	for _, s := range steps {
		tag, err := m.db.Exec(ctx, `DELETE FROM usage_buckets WHERE step_seconds = $1 AND bucket_start < $2`,
			int(s.Step/time.Second), now.Add(-s.Keep))
		if err != nil {
			return total, fmt.Errorf("prune usage buckets: %w", err)
		}
		total += tag.RowsAffected()
	}
	if _, err := m.db.Exec(ctx, `DELETE FROM usage_reports WHERE received_at < $1`, now.Add(-24*time.Hour)); err != nil {
		return total, fmt.Errorf("prune usage reports: %w", err)
	}
	return total, nil
}
