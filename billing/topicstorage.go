package billing

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Storage per provisioned topic: each usage report carries, per instance,
// the stored bytes of the instance's provisioned topics at the window's end
// (InstanceUsage.TopicStoredBytes). Only the latest value of each topic is
// kept (table topic_storage); it goes with the topic.

// MaxTopicsPerReport bounds the topics one instance's usage may name (the
// largest plan's topics per instance).
const MaxTopicsPerReport = 10000

// TopicStorage is a provisioned topic's latest stored bytes, as of
// ReportedAt (the end of the report's window).
type TopicStorage struct {
	InstanceID  string    `json:"instance_id"`
	TopicID     string    `json:"topic_id"`
	StoredBytes int64     `json:"stored_bytes"`
	ReportedAt  time.Time `json:"reported_at"`
}

func validateTopicStorage(u InstanceUsage) error {
	if len(u.TopicStoredBytes) > MaxTopicsPerReport {
		return fmt.Errorf("%w: %d topics for instance %s, at most %d", ErrInvalidReport, len(u.TopicStoredBytes), u.InstanceID, MaxTopicsPerReport)
	}
	for id, n := range u.TopicStoredBytes {
		if id == "" || n < 0 {
			return fmt.Errorf("%w: bad topic storage for instance %s", ErrInvalidReport, u.InstanceID)
		}
	}
	return nil
}

// recordTopicStorage keeps each named topic's value if the report is newer
// than the one kept. The caller names only topics of the instance (the
// node link checks them with tenancy): an unknown topic fails the report.
// An instance without an org has no topics to record.
func recordTopicStorage(ctx context.Context, tx pgx.Tx, r UsageReport, orgs map[string]string) error {
	batch := &pgx.Batch{}
	for _, u := range r.Instances {
		org, ok := orgs[u.InstanceID]
		if len(u.TopicStoredBytes) == 0 || !ok {
			continue
		}
		ids := make([]string, 0, len(u.TopicStoredBytes))
		bytes := make([]int64, 0, len(u.TopicStoredBytes))
		for id, n := range u.TopicStoredBytes {
			ids, bytes = append(ids, id), append(bytes, n)
		}
		batch.Queue(upsertTopicStorage, u.InstanceID, org, ids, bytes, r.To)
	}
	if batch.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("record topic storage: %w", err)
	}
	return nil
}

const upsertTopicStorage = `
INSERT INTO topic_storage AS s (topic_id, instance_id, org_id, stored_bytes, reported_at)
SELECT v.id, $1, $2, v.bytes, $5
FROM unnest($3::text[], $4::bigint[]) AS v(id, bytes)
ORDER BY v.id
ON CONFLICT (topic_id) DO UPDATE SET stored_bytes = EXCLUDED.stored_bytes, reported_at = EXCLUDED.reported_at
WHERE s.reported_at <= EXCLUDED.reported_at AND s.instance_id = EXCLUDED.instance_id`

// TopicStorage lists the latest stored bytes of the org's topics, of one
// instance (instanceID) or of all (instanceID ""), ordered by instance and
// topic. A topic no report has named yet is absent; another org's
// instance yields nothing.
func (m *Meter) TopicStorage(ctx context.Context, orgID, instanceID string) ([]TopicStorage, error) {
	rows, err := m.db.Query(ctx, `
SELECT instance_id, topic_id, stored_bytes, reported_at FROM topic_storage
WHERE org_id = $1 AND ($2 = '' OR instance_id = $2)
ORDER BY instance_id, topic_id`, orgID, instanceID)
	if err != nil {
		return nil, fmt.Errorf("topic storage: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (TopicStorage, error) {
		var ts TopicStorage
		err := row.Scan(&ts.InstanceID, &ts.TopicID, &ts.StoredBytes, &ts.ReportedAt)
		ts.ReportedAt = ts.ReportedAt.UTC()
		return ts, err
	})
	if err != nil {
		return nil, fmt.Errorf("topic storage: %w", err)
	}
	if out == nil {
		out = []TopicStorage{}
	}
	return out, nil
}
