package billing

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestTopicStorage: a report's per-topic stored bytes are kept as the
// topic's latest value (an older report arriving late changes nothing); a
// replayed report counts once; another org sees nothing; the value goes
// with the topic and with the instance; a negative value or too many
// topics refuse the report.
func TestTopicStorage(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	b := newBilling(t)
	b.org(t, "o-a", t0)
	b.org(t, "o-b", t0)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := b.db.Pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`INSERT INTO cells (id, name) VALUES ('c-1', 'n-1')`)
	exec(`INSERT INTO nodes (id, name, token_hash, cell_id) VALUES ('n-1', 'n-1', '\x00', 'c-1')`)
	for _, in := range [][2]string{{"i-a", "o-a"}, {"i-b", "o-b"}} {
		exec(`INSERT INTO instances (id, org_id, name, plan_id, status, node_id, cell_id, quotas) VALUES ($1, $2, $1, 'free', 'running', 'n-1', 'c-1', '{}')`, in[0], in[1])
	}
	for _, tp := range [][3]string{{"t-tel", "i-a", "telemetry"}, {"t-cmd", "i-a", "commands"}, {"t-b", "i-b", "other"}} {
		exec(`INSERT INTO topics (id, instance_id, name, filter, created_at, updated_at) VALUES ($1, $2, $3, $3 || '/#', now(), now())`, tp[0], tp[1], tp[2])
	}
	m := NewMeter(b.db.Pool, orgMap{"i-a": "o-a", "i-b": "o-b"}, nil)
	report := func(seq int64, to time.Time, topics map[string]int64) UsageReport {
		return UsageReport{NodeID: "n-1", Seq: seq, From: to.Add(-10 * time.Second), To: to,
			Instances: []InstanceUsage{{InstanceID: "i-a", TopicStoredBytes: topics}}}
	}
	latest := func(org, inst string) map[string]TopicStorage {
		t.Helper()
		ts, err := m.TopicStorage(ctx, org, inst)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]TopicStorage{}
		for _, s := range ts {
			out[s.TopicID] = s
		}
		return out
	}
	if got := latest("o-a", "i-a"); len(got) != 0 {
		t.Fatalf("before any report: %+v", got)
	}
	if _, err := m.Ingest(ctx, report(1, t0.Add(20*time.Second), map[string]int64{"t-tel": 4096, "t-cmd": 0})); err != nil {
		t.Fatal(err)
	}
	got := latest("o-a", "i-a")
	if len(got) != 2 || got["t-tel"].StoredBytes != 4096 || !got["t-tel"].ReportedAt.Equal(t0.Add(20*time.Second)) ||
		got["t-cmd"].StoredBytes != 0 || got["t-tel"].InstanceID != "i-a" {
		t.Fatalf("after a report: %+v", got)
	}
	if b := latest("o-b", ""); len(b) != 0 {
		t.Fatalf("org o-b sees topic storage: %+v", b)
	}
	// Another org sees nothing of i-a, by instance or in all.
	if x := latest("o-b", "i-a"); len(x) != 0 {
		t.Fatalf("org o-b sees i-a's topics: %+v", x)
	}
	// An older report arriving late does not overwrite; a replay counts once.
	if _, err := m.Ingest(ctx, report(2, t0.Add(10*time.Second), map[string]int64{"t-tel": 1})); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Ingest(ctx, report(3, t0.Add(30*time.Second), map[string]int64{"t-tel": 5000})); err != nil {
		t.Fatal(err)
	}
	if dup, err := m.Ingest(ctx, report(3, t0.Add(30*time.Second), map[string]int64{"t-tel": 1})); err != nil || !dup {
		t.Fatalf("replay: dup %v err %v", dup, err)
	}
	if got := latest("o-a", ""); got["t-tel"].StoredBytes != 5000 {
		t.Fatalf("latest value: %+v", got["t-tel"])
	}
	if _, err := m.Ingest(ctx, report(4, t0.Add(40*time.Second), map[string]int64{"t-tel": -1})); !errors.Is(err, ErrInvalidReport) {
		t.Fatalf("negative stored bytes: %v", err)
	}
	many := map[string]int64{}
	for i := range MaxTopicsPerReport + 1 {
		many[fmt.Sprint("t-", i)] = 1
	}
	if _, err := m.Ingest(ctx, report(4, t0.Add(40*time.Second), many)); !errors.Is(err, ErrInvalidReport) {
		t.Fatalf("%d topics: %v", len(many), err)
	}
	// Deleted with the topic, then with the instance.
	exec(`DELETE FROM topics WHERE id = 't-tel'`)
	var n int
	if err := b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM topic_storage WHERE instance_id = 'i-a'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("after deleting a topic: %d rows (%v)", n, err)
	}
	exec(`DELETE FROM instances WHERE id = 'i-a'`)
	if err := b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM topic_storage`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("after deleting the instance: %d rows (%v)", n, err)
	}
}
