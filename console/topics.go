package console

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

// Topics tab: an instance's provisioned topics (policy from Postgres through
// tenancy.Service), their storage and consumer groups (read from the node
// serving the instance through the node API, like the API's routes), and
// the instance's strict mode.

// topicGroupsListed bounds the topics whose consumer groups the list asks
// the node for (each is one node call); a topic's page always shows them.
const topicGroupsListed = 50

// TopicRow is a topic with what its node reports about it.
type TopicRow struct {
	tenancy.Topic
	// Stored is the bytes the node stores for the topic; -1 when unknown.
	Stored int64
	// Groups are its consumer groups; GroupsKnown is false when the node
	// was not asked or could not answer.
	Groups      []nodelink.GroupStat
	GroupsKnown bool
}

// TopicsView is an instance's Topics tab.
type TopicsView struct {
	Inst    tenancy.Instance
	Topics  []TopicRow
	More    bool
	Strict  bool
	Form    Form   // a new topic
	NodeErr string // why storage and groups are missing ("" when read)
}

// TopicView is one topic's page: its policy, its consumer groups, delete.
type TopicView struct {
	Inst    tenancy.Instance
	Row     TopicRow
	Strict  bool
	Form    Form
	NodeErr string
}

// topicFields are the form's fields (named as the service's field errors).
var topicFields = []string{"name", "filter", "retention_seconds", "retention_bytes", "max_qos", "retain_allowed", "max_payload_bytes"}

// callNode asks the instance's cell for op (the caller has checked the
// instance belongs to the org).
func (c *Console) callNode(ctx context.Context, in tenancy.Instance, op string, body, out any) error {
	if c.nodeAPI == nil {
		return errors.New("no data-plane node is reachable from this console")
	}
	return c.rules.Call(ctx, in.NodeID, in.ID, op, body, out)
}

// nodeProblem says why the node's figures are missing, in words a user can
// act on.
func nodeProblem(err error) string {
	var ne *nodelink.Error
	if errors.As(err, &ne) && ne.Status == http.StatusNotFound {
		return "The node has not applied the latest topics yet; reload in a moment."
	}
	return "Storage and consumer groups are read from the instance's node, which cannot be reached right now; reload in a moment."
}

// topicRows adds the node's storage (one call) and, for the first topics,
// their consumer groups.
func (c *Console) topicRows(ctx context.Context, in tenancy.Instance, list []tenancy.Topic, groupsFor int) ([]TopicRow, string) {
	rows := make([]TopicRow, len(list))
	for i, t := range list {
		rows[i] = TopicRow{Topic: t, Stored: -1}
	}
	var stats []nodelink.TopicStat
	if err := c.callNode(ctx, in, nodelink.OpStats, struct{}{}, &stats); err != nil {
		return rows, nodeProblem(err)
	}
	stored := map[string]int64{}
	for _, s := range stats {
		stored[s.TopicID] = s.StoredBytes
	}
	problem := ""
	for i := range rows {
		if b, ok := stored[rows[i].ID]; ok {
			rows[i].Stored = b
		}
		if i >= groupsFor {
			continue
		}
		var gs []nodelink.GroupStat
		if err := c.callNode(ctx, in, nodelink.OpGroups, nodelink.GroupsRequest{TopicID: rows[i].ID}, &gs); err != nil {
			problem = nodeProblem(err)
			continue
		}
		rows[i].Groups, rows[i].GroupsKnown = gs, true
	}
	return rows, problem
}

func (c *Console) topics(w http.ResponseWriter, r *http.Request) {
	c.showTopics(w, r, http.StatusOK, Form{Values: map[string]string{"max_qos": "2", "retain_allowed": "on"}, Errors: map[string]string{}})
}

func (c *Console) showTopics(w http.ResponseWriter, r *http.Request, status int, f Form) {
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	list, next, err := c.svc.ListTopics(r.Context(), in.OrgID, in.ID, tenancy.Page{Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	strict, err := c.svc.StrictTopics(r.Context(), in.OrgID, in.ID)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := TopicsView{Inst: in, More: next != "", Strict: strict, Form: f}
	v.Topics, v.NodeErr = c.topicRows(r.Context(), in, list, topicGroupsListed)
	p := c.page(w, r, "Topics · "+in.Name, "instances")
	c.render(w, r, status, TopicsPage(p, v))
}

// topicForm reads the form into a topic; a field that is not a number is
// reported next to it.
func topicForm(r *http.Request) (tenancy.TopicPolicy, Form) {
	f := formOf(r, topicFields...)
	t := tenancy.TopicPolicy{Name: f.Get("name"), Filter: f.Get("filter"), RetainAllowed: f.Get("retain_allowed") == "on"}
	num := func(k string, bits int) int64 {
		s := f.Get(k)
		if s == "" {
			return 0
		}
		n, err := strconv.ParseInt(s, 10, bits)
		if err != nil || n < 0 {
			f.Errors[k] = "must be a whole number, 0 or more"
		}
		return n
	}
	t.RetentionSeconds = num("retention_seconds", 64)
	t.RetentionBytes = num("retention_bytes", 64)
	t.MaxPayloadBytes = int(num("max_payload_bytes", 32))
	q := num("max_qos", 8)
	if q > 2 {
		f.Errors["max_qos"] = "must be 0, 1 or 2"
	}
	t.MaxQoS = byte(q)
	return t, f
}

// topicErrors moves a refusal of the service onto the form; false when
// err is another failure.
func topicErrors(f *Form, err error) bool {
	switch {
	case f.fieldErrors(err, nil):
	case errors.Is(err, tenancy.ErrConflict):
		f.Errors["name"] = "another topic of this instance has this name; choose another"
	case errors.Is(err, tenancy.ErrLimitReached):
		f.Errors["name"] = "your plan's topic limit is reached (" + err.Error() + "); delete a topic or change plan under Billing"
	default:
		return false
	}
	return true
}

func (c *Console) createTopic(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o, instID := orgFrom(r.Context()), chi.URLParam(r, "inst")
	t, f := topicForm(r)
	if len(f.Errors) == 0 {
		created, err := c.svc.CreateTopic(r.Context(), actor(r), o.ID, instID, t)
		if err == nil {
			setFlash(w, "Topic “"+created.Name+"” created.", c.secure)
			seeOther(w, r, c.instancePath(o.ID, instID, "/topics"))
			return
		}
		if !topicErrors(&f, err) {
			c.fail(w, r, err)
			return
		}
	}
	c.showTopics(w, r, http.StatusUnprocessableEntity, f)
}

func (c *Console) setStrictTopics(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o, instID := orgFrom(r.Context()), chi.URLParam(r, "inst")
	on := r.PostFormValue("strict") == "on"
	if err := c.svc.SetStrictTopics(r.Context(), actor(r), o.ID, instID, on); err != nil {
		c.fail(w, r, err)
		return
	}
	if on {
		setFlash(w, "Strict mode is on: devices may only publish to topics matching a topic listed here.", c.secure)
	} else {
		setFlash(w, "Strict mode is off: devices may publish to any topic their ACL allows.", c.secure)
	}
	seeOther(w, r, c.instancePath(o.ID, instID, "/topics"))
}

func (c *Console) topicPage(w http.ResponseWriter, r *http.Request) {
	c.showTopic(w, r, http.StatusOK, Form{})
}

func (c *Console) showTopic(w http.ResponseWriter, r *http.Request, status int, f Form) {
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	t, err := c.svc.GetTopic(r.Context(), in.OrgID, in.ID, chi.URLParam(r, "topic"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	strict, err := c.svc.StrictTopics(r.Context(), in.OrgID, in.ID)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := TopicView{Inst: in, Strict: strict, Form: f}
	rows, problem := c.topicRows(r.Context(), in, []tenancy.Topic{t}, 1)
	v.Row, v.NodeErr = rows[0], problem
	if v.Form.Values == nil {
		v.Form = Form{Values: topicValues(t), Errors: map[string]string{}}
	}
	p := c.page(w, r, "Topic "+t.Name+" · "+in.Name, "instances")
	c.render(w, r, status, TopicPage(p, v))
}

// topicValues fills the edit form from a topic.
func topicValues(t tenancy.Topic) map[string]string {
	v := map[string]string{"name": t.Name, "filter": t.Filter, "retention_seconds": strconv.FormatInt(t.RetentionSeconds, 10),
		"retention_bytes": strconv.FormatInt(t.RetentionBytes, 10), "max_qos": strconv.Itoa(int(t.MaxQoS)),
		"max_payload_bytes": strconv.Itoa(t.MaxPayloadBytes)}
	if t.RetainAllowed {
		v["retain_allowed"] = "on"
	}
	return v
}

func (c *Console) updateTopic(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o, instID, id := orgFrom(r.Context()), chi.URLParam(r, "inst"), chi.URLParam(r, "topic")
	t, f := topicForm(r)
	if len(f.Errors) == 0 {
		_, err := c.svc.UpdateTopic(r.Context(), actor(r), o.ID, instID, id, tenancy.TopicPatch{Name: &t.Name, Filter: &t.Filter,
			RetentionSeconds: &t.RetentionSeconds, RetentionBytes: &t.RetentionBytes, MaxQoS: &t.MaxQoS, RetainAllowed: &t.RetainAllowed,
			MaxPayloadBytes: &t.MaxPayloadBytes})
		if err == nil {
			setFlash(w, "Topic “"+t.Name+"” saved: the node applies it to new messages and publishes at once.", c.secure)
			seeOther(w, r, c.instancePath(o.ID, instID, "/topics/"+id))
			return
		}
		if !topicErrors(&f, err) {
			c.fail(w, r, err)
			return
		}
	}
	c.showTopic(w, r, http.StatusUnprocessableEntity, f)
}

func (c *Console) deleteTopic(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o, instID := orgFrom(r.Context()), chi.URLParam(r, "inst")
	if err := c.svc.DeleteTopic(r.Context(), actor(r), o.ID, instID, chi.URLParam(r, "topic")); err != nil {
		c.fail(w, r, err)
		return
	}
	setFlash(w, "Topic deleted: its stored messages now follow the instance's retention.", c.secure)
	seeOther(w, r, c.instancePath(o.ID, instID, "/topics"))
}

// topicDeleteWarning is the confirmation a topic's Delete asks for, with
// what it cuts off.
func topicDeleteWarning(v TopicView) string {
	msg := "Delete topic “" + v.Row.Name + "”?"
	if v.Row.GroupsKnown && len(v.Row.Groups) > 0 {
		msg += " Its " + plural(len(v.Row.Groups), "consumer group", "consumer groups") + " can no longer read it."
	} else {
		msg += " Applications can no longer read it as a consumer group."
	}
	if v.Strict {
		msg += " Strict mode is on: device publishes matching no other topic will be refused."
	}
	return msg + " Its stored messages then follow the instance's retention."
}
