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
// kept (table topic_storage), and it goes with the topic.

// MaxTopicsPerReport bounds the topics one instance's usage may name (the
// largest plan's topics per instance).
const MaxTopicsPerReport = 10000

// TopicStorage is a provisioned topic's latest stored bytes. ReportedAt is
// nil while no report has named the topic (StoredBytes is then 0).
type TopicStorage struct {
	InstanceID  string     `json:"instance_id"`
	TopicID     string     `json:"topic_id"`
	Name        string     `json:"name"`
	StoredBytes int64      `json:"stored_bytes"`
	ReportedAt  *time.Time `json:"reported_at"`
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
// than the one kept. Only topics of the instance itself are recorded: a
// topic ID that is unknown, gone or another instance's is ignored.
func recordTopicStorage(ctx context.Context, tx pgx.Tx, r UsageReport) error {
	batch := &pgx.Batch{}
	for _, u := range r.Instances {
		if len(u.TopicStoredBytes) == 0 {
			continue
		}
		ids := make([]string, 0, len(u.TopicStoredBytes))
		bytes := make([]int64, 0, len(u.TopicStoredBytes))
		for id, n := range u.TopicStoredBytes {
			ids, bytes = append(ids, id), append(bytes, n)
		}
		batch.Queue(upsertTopicStorage, u.InstanceID, ids, bytes, r.To)
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
INSERT INTO topic_storage AS s (topic_id, instance_id, stored_bytes, reported_at)
SELECT t.id, t.instance_id, v.bytes, $4
FROM unnest($2::text[], $3::bigint[]) AS v(id, bytes)
JOIN topics t ON t.id = v.id AND t.instance_id = $1
ORDER BY t.id
ON CONFLICT (topic_id) DO UPDATE SET stored_bytes = EXCLUDED.stored_bytes, reported_at = EXCLUDED.reported_at
WHERE s.reported_at <= EXCLUDED.reported_at`

// TopicStorage lists the latest stored bytes of the org's provisioned
// topics, of one instance (instanceID) or of all (instanceID ""), ordered
// by instance and topic name. Another org's instance yields nothing.
func (m *Meter) TopicStorage(ctx context.Context, orgID, instanceID string) ([]TopicStorage, error) {
	rows, err := m.db.Query(ctx, `
SELECT t.instance_id, t.id, t.name, coalesce(s.stored_bytes, 0), s.reported_at
FROM topics t
JOIN instances i ON i.id = t.instance_id
LEFT JOIN topic_storage s ON s.topic_id = t.id
WHERE i.org_id = $1 AND ($2 = '' OR t.instance_id = $2)
ORDER BY t.instance_id, t.name`, orgID, instanceID)
	if err != nil {
		return nil, fmt.Errorf("topic storage: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (TopicStorage, error) {
		var ts TopicStorage
		err := row.Scan(&ts.InstanceID, &ts.TopicID, &ts.Name, &ts.StoredBytes, &ts.ReportedAt)
		if ts.ReportedAt != nil {
			at := ts.ReportedAt.UTC()
			ts.ReportedAt = &at
		}
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
