package console

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/aeriemq/aerie/tenancy"
)

// TestTopicsTab: a writer creates, edits and deletes topics and switches
// strict mode through the Topics tab (each change reaches the service);
// refusals sit next to their fields in words to act on (duplicate name, bad
// filter, not a number, QoS above 2); a viewer sees the topics and no write
// control, and is refused (403) when posting anyway; a post without the
// CSRF token is refused; another org gets 404. Without a node API the page
// says storage and groups cannot be read, and shows them as unknown.
func TestTopicsTab(t *testing.T) {
	e := newEnv(t)
	withNode(t, e)
	ctx := context.Background()
	owner := e.client(t)
	orgID := owner.signup("owner@example.com", "Acme")
	id := owner.createInstance(orgID, "home")
	base := "/orgs/" + orgID + "/instances/" + id + "/topics"

	res, doc := owner.get(base)
	if res.StatusCode != http.StatusOK || doc.Find(`[data-testid="no-topics"]`).Length() != 1 {
		t.Fatalf("empty topics tab: %d %s", res.StatusCode, doc.Find("main").Text())
	}
	if doc.Find(`nav.tabs a[aria-current="page"][href$="/topics"]`).Length() != 1 {
		t.Error("the Topics tab is not marked current")
	}
	if got := doc.Find(`[data-testid="strict-state"]`).Text(); got != "off" {
		t.Errorf("strict mode shown %q on a new instance", got)
	}
	res, doc = owner.post(base, url.Values{"name": {"telemetry"}, "filter": {"fleet/+/telemetry"}, "retention_seconds": {"3600"},
		"retention_bytes": {"1000000"}, "max_qos": {"1"}, "retain_allowed": {"on"}, "max_payload_bytes": {"0"}})
	if res.StatusCode != http.StatusOK || !strings.Contains(doc.Find(`[data-testid="flash"]`).Text(), "created") {
		t.Fatalf("create: %d %s", res.StatusCode, doc.Find("main").Text())
	}
	list, _, err := e.svc.ListTopics(ctx, orgID, id, tenancy.Page{})
	if err != nil || len(list) != 1 {
		t.Fatalf("topics %+v %v", list, err)
	}
	tp := list[0]
	if tp.Filter != "fleet/+/telemetry" || tp.RetentionSeconds != 3600 || tp.RetentionBytes != 1000000 || tp.MaxQoS != 1 || !tp.RetainAllowed {
		t.Errorf("created %+v", tp)
	}
	row := doc.Find(`[data-testid="topic-telemetry"]`)
	if !strings.Contains(row.Text(), "1 h, at most 1.00 MB") || row.Find(`[data-testid="topic-stored"]`).Text() != "unknown" {
		t.Errorf("row %q", row.Text())
	}
	if msg := doc.Find(`[data-testid="topics-node-error"]`).Text(); !strings.Contains(msg, "cannot be reached") {
		t.Errorf("no word on the missing storage: %q", msg)
	}

	// Refusals next to their fields.
	for _, c := range []struct {
		vals  url.Values
		field string
		want  string
	}{
		{url.Values{"name": {"telemetry"}, "filter": {"a/b"}}, "name", "another topic of this instance has this name"},
		{url.Values{"name": {"bad"}, "filter": {"a/#/b"}}, "filter", "valid MQTT topic filter"},
		{url.Values{"name": {"n"}, "filter": {"a"}, "retention_seconds": {"soon"}}, "retention_seconds", "whole number"},
		{url.Values{"name": {"n"}, "filter": {"a"}, "max_qos": {"3"}}, "max_qos", "0, 1 or 2"},
	} {
		owner.get(base)
		res, doc := owner.post(base, c.vals)
		if got := doc.Find(`[data-testid="error-` + c.field + `"]`).Text(); res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(got, c.want) {
			t.Errorf("%v: %d, %s error %q, want %q", c.vals, res.StatusCode, c.field, got, c.want)
		}
	}

	// Edit, strict mode.
	topicPath := base + "/" + tp.ID
	_, doc = owner.get(topicPath)
	if v, _ := doc.Find(`#f-retention_seconds`).Attr("value"); v != "3600" {
		t.Errorf("edit form retention %q", v)
	}
	if doc.Find(`[data-testid="groups-unknown"]`).Length() != 1 {
		t.Error("the topic page does not say its groups are unknown")
	}
	res, _ = owner.post(topicPath, url.Values{"name": {"telemetry"}, "filter": {"fleet/+/telemetry"}, "retention_seconds": {"60"}, "max_qos": {"0"}})
	if got, _ := e.svc.GetTopic(ctx, orgID, id, tp.ID); res.StatusCode != http.StatusOK || got.RetentionSeconds != 60 || got.MaxQoS != 0 || got.RetainAllowed || got.RetentionBytes != 0 {
		t.Errorf("after edit: %d %+v", res.StatusCode, got)
	}
	owner.get(base)
	owner.post(base+"/strict", url.Values{"strict": {"on"}})
	if on, _ := e.svc.StrictTopics(ctx, orgID, id); !on {
		t.Error("strict mode not on")
	}

	// A viewer: sees, cannot change.
	viewer := e.joinAs(t, owner, orgID, "viewer@example.com", tenancy.RoleViewer)
	for _, page := range []string{base, topicPath} {
		res, doc := viewer.get(page)
		if res.StatusCode != http.StatusOK || doc.Find(`form[method="post"]:not(.logout)`).Length() != 0 || doc.Find(`button.danger`).Length() != 0 {
			t.Errorf("viewer on %s: %d, %d write forms", page, res.StatusCode, doc.Find(`form[method="post"]:not(.logout)`).Length())
		}
	}
	_, doc = viewer.get(topicPath)
	if !strings.Contains(doc.Find(`[data-testid="topic-policy"]`).Text(), "1 min") {
		t.Errorf("viewer's policy %q", doc.Find(`[data-testid="topic-policy"]`).Text())
	}
	for _, post := range []string{base, base + "/strict", topicPath, topicPath + "/delete"} {
		if res, _ := viewer.post(post, url.Values{"name": {"x"}, "filter": {"x"}, "strict": {"off"}}); res.StatusCode != http.StatusForbidden {
			t.Errorf("viewer POST %s: %d, want 403", post, res.StatusCode)
		}
	}
	if res, _ := owner.postRaw(topicPath+"/delete", url.Values{}); res.StatusCode != http.StatusForbidden {
		t.Errorf("delete without CSRF token: %d, want 403", res.StatusCode)
	}
	other := e.client(t)
	other.signup("other@example.com", "Other")
	if res, _ := other.get(topicPath); res.StatusCode != http.StatusNotFound {
		t.Errorf("another org's topic: %d, want 404", res.StatusCode)
	}
	if _, err := e.svc.GetTopic(ctx, orgID, id, tp.ID); err != nil {
		t.Fatalf("the topic went: %v", err)
	}

	// Delete asks (in the page) and says what it cuts off.
	_, doc = owner.get(topicPath)
	ask, _ := doc.Find(`form[data-confirm-submit]`).Attr("data-confirm-submit")
	if !strings.Contains(ask, "Delete topic “telemetry”?") || !strings.Contains(ask, "Strict mode is on") {
		t.Errorf("delete confirmation %q", ask)
	}
	res, doc = owner.post(topicPath+"/delete", nil)
	if res.StatusCode != http.StatusOK || doc.Find(`[data-testid="no-topics"]`).Length() != 1 {
		t.Errorf("after delete: %d %s", res.StatusCode, doc.Find("main").Text())
	}
}
