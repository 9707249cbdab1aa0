package tenancy_test

import (
	"fmt"
	"testing"

	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

// TestFilterLive: the live lists of the API and the console search
// (case-insensitive; clients also by username and address) and page by
// client ID, with a cursor only when more follow.
func TestFilterLive(t *testing.T) {
	clients := []nodelink.ClientInfo{
		{ClientID: "a-1", Username: "Alice"}, {ClientID: "b-2", RemoteAddr: "10.0.0.7:5000"},
		{ClientID: "c-3", Username: "carol"}, {ClientID: "d-4", Username: "alice2"},
	}
	ids := func(l []nodelink.ClientInfo) string {
		var s []string
		for _, c := range l {
			s = append(s, c.ClientID)
		}
		return fmt.Sprint(s)
	}
	for _, c := range []struct {
		q, after  string
		limit     int
		want, nxt string
	}{
		{"", "", 10, "[a-1 b-2 c-3 d-4]", ""},
		{"", "", 2, "[a-1 b-2]", "b-2"},
		{"", "b-2", 2, "[c-3 d-4]", ""},
		{"ALICE", "", 10, "[a-1 d-4]", ""},
		{"10.0.0", "", 10, "[b-2]", ""},
		{"nobody", "", 10, "[]", ""},
	} {
		got, next := tenancy.FilterClients(clients, c.q, c.after, c.limit)
		if ids(got) != c.want || next != c.nxt || got == nil {
			t.Errorf("q=%q after=%q limit=%d: %s next %q, want %s next %q", c.q, c.after, c.limit, ids(got), next, c.want, c.nxt)
		}
	}
	sessions := []nodelink.SessionInfo{{ClientID: "dev-1"}, {ClientID: "dev-2"}, {ClientID: "probe"}}
	got, next := tenancy.FilterSessions(sessions, "DEV", "", 1)
	if len(got) != 1 || got[0].ClientID != "dev-1" || next != "dev-1" {
		t.Errorf("sessions: %v next %q", got, next)
	}
}
