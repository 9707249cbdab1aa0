package configsync

import (
	"path/filepath"
	"testing"

	"github.com/aeriemq/aerie/dataplane/config"
)

// TestRulesAndTopicsApplyAndSurviveDisk: rule.put/rule.delete change the
// instance's rules; rules and topics are in the disk snapshot (a node
// restarted from disk keeps their store queues).
func TestRulesAndTopicsApplyAndSurviveDisk(t *testing.T) {
	s := NewState()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Apply(config.Event{Revision: 1, Kind: config.KindSnapshot, Snapshot: &config.Snapshot{Revision: 1,
		Instances: []config.Instance{{ID: "i1", Status: config.StatusRunning, Topics: []config.Topic{{ID: "tp1", Name: "t", Filter: "a/+"}}}}}}))
	r := config.Rule{ID: "ru1", Name: "hook", Filter: "a/#", Sink: config.Sink{Type: config.SinkWebhook, URL: "https://x"}}
	must(s.Apply(config.Event{Revision: 2, Kind: config.KindRulePut, InstanceID: "i1", Rule: &r}))
	r2 := r
	r2.ID, r2.Paused = "ru2", true
	must(s.Apply(config.Event{Revision: 3, Kind: config.KindRulePut, InstanceID: "i1", Rule: &r2}))
	r2.Paused = false
	must(s.Apply(config.Event{Revision: 4, Kind: config.KindRulePut, InstanceID: "i1", Rule: &r2}))
	if rs := s.Rules("i1"); len(rs) != 2 || rs[1].ID != "ru2" || rs[1].Paused {
		t.Fatalf("rules %+v", rs)
	}
	if err := s.Apply(config.Event{Revision: 5, Kind: config.KindRulePut, InstanceID: "i1", Rule: &config.Rule{ID: "bad"}}); err == nil {
		t.Fatal("a rule without filter or sink applied")
	}
	p := filepath.Join(t.TempDir(), "snap")
	must(s.SaveFile(p))
	back := NewState()
	must(back.LoadFile(p))
	if rs := back.Rules("i1"); len(rs) != 2 {
		t.Fatalf("rules after disk: %+v", rs)
	}
	if ts, _ := back.Topics("i1"); len(ts) != 1 || ts[0].Filter != "a/+" {
		t.Fatalf("topics after disk: %+v", ts)
	}
	must(s.Apply(config.Event{Revision: 6, Kind: config.KindRuleDelete, InstanceID: "i1", ID: "ru1"}))
	if rs := s.Rules("i1"); len(rs) != 1 || rs[0].ID != "ru2" {
		t.Fatalf("after delete %+v", rs)
	}
}
