package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/tenancy"
)

// Instance pages: every read and write goes through tenancy.Service (and
// billing.Meter for the charts), with the scope the API demands for the
// same operation: write for create/suspend/resume/protection/credentials/
// ACL/quotas, admin for delete.

func (c *Console) instancesPath(orgID string) string { return "/orgs/" + orgID + "/instances" }

func (c *Console) instancePath(orgID, instID, rest string) string {
	return "/orgs/" + orgID + "/instances/" + instID + rest
}

// loadInstance answers the {inst} of the URL in the current org; another
// org's instance (or none) writes the 404 page and returns false.
func (c *Console) loadInstance(w http.ResponseWriter, r *http.Request) (tenancy.Instance, bool) {
	in, err := c.svc.Instance(r.Context(), orgFrom(r.Context()).ID, chi.URLParam(r, "inst"))
	if err != nil {
		c.fail(w, r, err)
		return tenancy.Instance{}, false
	}
	return in, true
}

func (c *Console) instances(w http.ResponseWriter, r *http.Request) {
	c.showInstances(w, r, http.StatusOK, Form{})
}

func (c *Console) showInstances(w http.ResponseWriter, r *http.Request, status int, f Form) {
	p := c.page(w, r, "Instances", "instances")
	list, _, err := c.svc.ListInstances(r.Context(), p.Org.ID, tenancy.Page{Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, status, InstancesPage(p, list, f))
}

func (c *Console) createInstance(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o := orgFrom(r.Context())
	f := formOf(r, "name")
	in, err := c.svc.CreateInstance(r.Context(), actor(r), o.ID, tenancy.NewInstance{Name: f.Get("name")})
	if err != nil {
		switch {
		case f.fieldErrors(err, nil):
		case errors.Is(err, tenancy.ErrNoNode):
			f.Errors["name"] = "No data-plane node is available to host a new instance right now. Try again in a minute."
			c.showInstances(w, r, http.StatusServiceUnavailable, f)
			return
		default:
			c.fail(w, r, err)
			return
		}
		c.showInstances(w, r, http.StatusUnprocessableEntity, f)
		return
	}
	setFlash(w, "Instance “"+in.Name+"” created.", c.secure)
	seeOther(w, r, c.instancePath(o.ID, in.ID, ""))
}

// metricRange is one of the dashboard's time ranges.
type metricRange struct {
	Key  string
	Span time.Duration
	Step time.Duration
}

var metricRanges = []metricRange{
	{"15m", 15 * time.Minute, 10 * time.Second},
	{"1h", time.Hour, 30 * time.Second},
	{"24h", 24 * time.Hour, 10 * time.Minute},
	{"7d", 7 * 24 * time.Hour, time.Hour},
}

func rangeOf(key string) metricRange {
	for _, m := range metricRanges {
		if m.Key == key {
			return m
		}
	}
	return metricRanges[1]
}

// Dashboard is the metrics section of an instance's page.
type Dashboard struct {
	Range  string
	Charts []ChartData
	Totals Totals
}

// Totals sum the dashboard's range: connections as last reported, the
// counters summed.
type Totals struct {
	Connections, MessagesIn, MessagesOut, BytesIn, BytesOut, Drops, AuthFailures int64
}

func totalsOf(pts []billing.Point) Totals {
	var t Totals
	for _, p := range pts {
		t.MessagesIn += p.MessagesIn
		t.MessagesOut += p.MessagesOut
		t.BytesIn += p.BytesIn
		t.BytesOut += p.BytesOut
		t.AuthFailures += p.AuthFailures
		for _, n := range p.Drops {
			t.Drops += n
		}
		if p.Connections > 0 || p.ConnectionsMax > 0 || p.MessagesIn > 0 || p.MessagesOut > 0 {
			t.Connections = p.Connections // the latest step with a report
		}
	}
	return t
}

// dashboard reads the instance's usage series; nil when there is no meter.
func (c *Console) dashboard(r *http.Request, orgID, instID string) (*Dashboard, error) {
	if c.meter == nil {
		return nil, nil
	}
	rg := rangeOf(r.URL.Query().Get("range"))
	now := c.now()
	pts, err := c.meter.Series(r.Context(), orgID, instID, now.Add(-rg.Span), now, rg.Step, now)
	if err != nil {
		return nil, err
	}
	var live int64
	liveOK := false
	if in, err := c.svc.Instance(r.Context(), orgID, instID); err == nil {
		live, liveOK = c.addPending(r.Context(), in, pts)
	}
	d := &Dashboard{Range: rg.Key, Charts: dashboardCharts(pts, rg.Step), Totals: totalsOf(pts)}
	partialLast(d.Charts, pts, rg.Step, now)
	if liveOK {
		d.Totals.Connections = live
	}
	return d, nil
}

// orgDashboard adds up the series of the org's instances (nil without a
// meter or instances).
func (c *Console) orgDashboard(r *http.Request, orgID string, insts []tenancy.Instance) (*Dashboard, error) {
	if c.meter == nil || len(insts) == 0 {
		return nil, nil
	}
	rg := rangeOf(r.URL.Query().Get("range"))
	now := c.now()
	var sum []billing.Point
	var live int64
	liveOK := true
	for _, in := range insts {
		pts, err := c.meter.Series(r.Context(), orgID, in.ID, now.Add(-rg.Span), now, rg.Step, now)
		if err != nil {
			return nil, err
		}
		n, ok := c.addPending(r.Context(), in, pts)
		live, liveOK = live+n, liveOK && ok
		if sum == nil {
			sum = make([]billing.Point, len(pts))
		}
		for i := range min(len(pts), len(sum)) {
			a, p := &sum[i], pts[i]
			a.Time = p.Time
			a.Connects += p.Connects
			a.AuthFailures += p.AuthFailures
			a.MessagesIn += p.MessagesIn
			a.MessagesOut += p.MessagesOut
			a.BytesIn += p.BytesIn
			a.BytesOut += p.BytesOut
			a.Connections += p.Connections
			a.ConnectionsMax += p.ConnectionsMax
			for k, v := range p.Drops {
				if a.Drops == nil {
					a.Drops = map[string]int64{}
				}
				a.Drops[k] += v
			}
		}
	}
	d := &Dashboard{Range: rg.Key, Charts: dashboardCharts(sum, rg.Step), Totals: totalsOf(sum)}
	partialLast(d.Charts, sum, rg.Step, now)
	if liveOK {
		d.Totals.Connections = live
	}
	return d, nil
}

// orgMetrics is the org overview's dashboard alone, for the auto-refresh.
func (c *Console) orgMetrics(w http.ResponseWriter, r *http.Request) {
	o := orgFrom(r.Context())
	if r.Header.Get("X-Partial") == "" {
		seeOther(w, r, "/orgs/"+o.ID+"/")
		return
	}
	insts, _, err := c.svc.ListInstances(r.Context(), o.ID, tenancy.Page{Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d, err := c.orgDashboard(r, o.ID, insts)
	if err != nil || d == nil {
		http.Error(w, "no metrics", http.StatusNotFound)
		return
	}
	c.render(w, r, http.StatusOK, DashboardRegion(*d))
}

// dashboardCharts turns points into the dashboard's charts: connections as
// counted, the counters as per-second rates over each step.
func dashboardCharts(pts []billing.Point, step time.Duration) []ChartData {
	n := len(pts)
	times := make([]time.Time, n)
	conns := make([]float64, n)
	mIn, mOut := make([]float64, n), make([]float64, n)
	bIn, bOut := make([]float64, n), make([]float64, n)
	reasons := []string{"acl", "quota", "queue_full", "too_large", "expired"}
	drops := make([][]float64, len(reasons))
	for i := range drops {
		drops[i] = make([]float64, n)
	}
	authFail := make([]float64, n)
	secs := step.Seconds()
	for i, p := range pts {
		times[i] = p.Time
		conns[i] = float64(p.Connections)
		mIn[i], mOut[i] = float64(p.MessagesIn)/secs, float64(p.MessagesOut)/secs
		bIn[i], bOut[i] = float64(p.BytesIn)/secs, float64(p.BytesOut)/secs
		for k, reason := range reasons {
			drops[k][i] = float64(p.Drops[reason]) / secs
		}
		authFail[i] = float64(p.AuthFailures) / secs
	}
	dropSeries := []ChartSeries{{Name: "auth failures", Class: "s1", Values: authFail}}
	for k, reason := range reasons {
		dropSeries = append(dropSeries, ChartSeries{Name: strings.ReplaceAll(reason, "_", " "), Class: fmt.Sprintf("s%d", k+2), Values: drops[k]})
	}
	return []ChartData{
		{ID: "connections", Title: "Connections", Times: times, Series: []ChartSeries{{Name: "connections", Class: "s1", Values: conns}}},
		{ID: "messages", Title: "Messages", Unit: "msg/s", Times: times, Series: []ChartSeries{
			{Name: "in", Class: "s2", Values: mIn}, {Name: "out", Class: "s3", Values: mOut}}},
		{ID: "bytes", Title: "Bytes", Unit: "B/s", Times: times, Series: []ChartSeries{
			{Name: "in", Class: "s4", Values: bIn}, {Name: "out", Class: "s5", Values: bOut}}},
		{ID: "drops", Title: "Drops by reason, auth failures", Unit: "/s", Times: times, Series: dropSeries},
	}
}

// InstanceView is an instance's detail page.
type InstanceView struct {
	Inst      tenancy.Instance
	Snippets  Snippets
	Dashboard *Dashboard
	LiveConns int // connected now, from the node; -1 when unknown
}

func (c *Console) instance(w http.ResponseWriter, r *http.Request) {
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	d, err := c.dashboard(r, in.OrgID, in.ID)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	p := c.page(w, r, in.Name, "instances")
	c.render(w, r, http.StatusOK, InstancePage(p, InstanceView{Inst: in, Snippets: snippetsFor(in, "<username>", "<password>"), Dashboard: d,
		LiveConns: c.liveCount(r.Context(), in)}))
}

// instanceMetrics is the dashboard alone, re-fetched every few seconds by
// aerie.js (data-refresh) with X-Partial; without it, the full page.
func (c *Console) instanceMetrics(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Partial") == "" {
		q := ""
		if rg := r.URL.Query().Get("range"); rg != "" {
			q = "?range=" + url.QueryEscape(rg)
		}
		seeOther(w, r, c.instancePath(orgFrom(r.Context()).ID, chi.URLParam(r, "inst"), q))
		return
	}
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	d, err := c.dashboard(r, in.OrgID, in.ID)
	if err != nil || d == nil {
		http.Error(w, "no metrics", http.StatusNotFound)
		return
	}
	c.render(w, r, http.StatusOK, DashboardRegion(*d))
}

func (c *Console) setInstanceStatus(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o := orgFrom(r.Context())
	st := r.PostFormValue("status")
	in, err := c.svc.UpdateInstance(r.Context(), actor(r), o.ID, chi.URLParam(r, "inst"), tenancy.InstancePatch{Status: &st}, nil)
	if err != nil {
		var ve *tenancy.ValidationError
		if errors.As(err, &ve) {
			c.errorPage(w, r, http.StatusUnprocessableEntity, "Choose running or suspended.")
			return
		}
		c.fail(w, r, err)
		return
	}
	if in.Status == tenancy.InstanceSuspended {
		setFlash(w, "Instance suspended: devices are disconnected and refused until you resume it.", c.secure)
	} else {
		setFlash(w, "Instance resumed.", c.secure)
	}
	seeOther(w, r, c.instancePath(o.ID, in.ID, ""))
}

func (c *Console) setDeletionProtection(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o := orgFrom(r.Context())
	on := r.PostFormValue("protection") == "on"
	in, err := c.svc.UpdateInstance(r.Context(), actor(r), o.ID, chi.URLParam(r, "inst"), tenancy.InstancePatch{DeletionProtection: &on}, nil)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if on {
		setFlash(w, "Deletion protection is on.", c.secure)
	} else {
		setFlash(w, "Deletion protection is off: the instance can be deleted.", c.secure)
	}
	seeOther(w, r, c.instancePath(o.ID, in.ID, ""))
}

func (c *Console) deleteInstance(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeAdmin); !ok {
		return
	}
	o := orgFrom(r.Context())
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	id := in.ID
	if in.DeletionProtection {
		c.errorPage(w, r, http.StatusConflict, "Deletion protection is on for this instance: turn it off first, then delete.")
		return
	}
	if strings.TrimSpace(r.PostFormValue("confirm_name")) != in.Name {
		setFlash(w, "Nothing was deleted: type the instance name “"+in.Name+"” exactly to confirm.", c.secure)
		seeOther(w, r, c.instancePath(o.ID, id, ""))
		return
	}
	if err := c.svc.DeleteInstance(r.Context(), actor(r), o.ID, id); err != nil {
		if errors.Is(err, tenancy.ErrDeletionProtected) {
			c.errorPage(w, r, http.StatusConflict, "Deletion protection is on for this instance: turn it off first, then delete.")
			return
		}
		c.fail(w, r, err)
		return
	}
	setFlash(w, "Instance deleted.", c.secure)
	seeOther(w, r, c.instancesPath(o.ID))
}

// Credentials.

// ShownPassword is a device password shown once (just created or rotated).
type ShownPassword struct {
	Username     string
	MQTTUsername string
	Password     string
}

// CredentialsView is the credentials page.
type CredentialsView struct {
	Inst     tenancy.Instance
	Creds    []tenancy.Credential
	More     bool
	Form     Form // one credential
	Bulk     Form // CSV upload
	Shown    []ShownPassword
	Rotated  bool
	Snippets *Snippets // for the one credential just created
	// Live counts each username's connections now (nil when the node
	// cannot be asked).
	Live map[string]int
}

func (c *Console) credentials(w http.ResponseWriter, r *http.Request) {
	c.showCredentials(w, r, http.StatusOK, CredentialsView{})
}

func (c *Console) showCredentials(w http.ResponseWriter, r *http.Request, status int, v CredentialsView) {
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	creds, next, err := c.svc.ListCredentials(r.Context(), in.OrgID, in.ID, tenancy.Page{Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v.Inst, v.Creds, v.More = in, creds, next != ""
	if live, err := c.liveClients(r.Context(), in); err == nil {
		v.Live = map[string]int{}
		for _, cl := range live {
			v.Live[cl.Username]++
		}
	}
	if v.Form.Values == nil {
		v.Form = Form{Values: map[string]string{}, Errors: map[string]string{}}
	}
	if v.Bulk.Values == nil {
		v.Bulk = Form{Values: map[string]string{}, Errors: map[string]string{}}
	}
	if len(v.Shown) == 1 {
		s := snippetsFor(in, v.Shown[0].Username, v.Shown[0].Password)
		v.Snippets = &s
	}
	p := c.page(w, r, "Credentials · "+in.Name, "instances")
	c.render(w, r, status, CredentialsPage(p, v))
}

// parseExpiry reads an optional expiry: a date-time (as a datetime-local
// input sends it, taken as UTC), a date, or RFC 3339.
func parseExpiry(s string) (*time.Time, bool) {
	if s == "" {
		return nil, true
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return &t, true
		}
	}
	return nil, false
}

func (c *Console) createCredential(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o := orgFrom(r.Context())
	f := formOf(r, "username", "client_id_pattern", "expires_at")
	exp, ok := parseExpiry(f.Get("expires_at"))
	if !ok {
		f.Errors["expires_at"] = "must be a date and time (YYYY-MM-DD HH:MM, UTC)"
		c.showCredentials(w, r, http.StatusUnprocessableEntity, CredentialsView{Form: f})
		return
	}
	instID := chi.URLParam(r, "inst")
	creds, pws, err := c.svc.CreateCredentials(r.Context(), actor(r), o.ID, instID,
		[]tenancy.NewCredential{{Username: f.Get("username"), ClientIDPattern: f.Get("client_id_pattern"), ExpiresAt: exp}})
	if err != nil {
		if !f.fieldErrors(err, map[string]string{"credentials": "username"}) {
			c.fail(w, r, err)
			return
		}
		c.showCredentials(w, r, http.StatusUnprocessableEntity, CredentialsView{Form: f})
		return
	}
	// The password is in this response only (never in a cookie or a redirect).
	c.showCredentials(w, r, http.StatusCreated, CredentialsView{Shown: shown(creds, pws)})
}

func shown(creds []tenancy.Credential, pws []string) []ShownPassword {
	out := make([]ShownPassword, len(creds))
	for i, cr := range creds {
		out[i] = ShownPassword{Username: cr.Username, MQTTUsername: mqttUsername(cr.Username, cr.InstanceID), Password: pws[i]}
	}
	return out
}

func mqttUsername(user, instID string) string { return user + "@" + instID }

// parseBulk reads CSV lines "username[,client_id_pattern]"; blank lines and
// lines starting with # are skipped.
func parseBulk(text string) ([]tenancy.NewCredential, []int, string) {
	var out []tenancy.NewCredential
	var lines []int
	for i, line := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, ",")
		if len(parts) > 2 {
			return nil, nil, fmt.Sprintf("line %d: want username or username,client_id_pattern", i+1)
		}
		nc := tenancy.NewCredential{Username: strings.TrimSpace(parts[0])}
		if len(parts) == 2 {
			nc.ClientIDPattern = strings.TrimSpace(parts[1])
		}
		out = append(out, nc)
		lines = append(lines, i+1)
	}
	if len(out) == 0 {
		return nil, nil, "enter at least one line"
	}
	if len(out) > tenancy.MaxBulkCredentials {
		return nil, nil, fmt.Sprintf("at most %d credentials at once (got %d)", tenancy.MaxBulkCredentials, len(out))
	}
	return out, lines, ""
}

func (c *Console) bulkCredentials(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o := orgFrom(r.Context())
	csv := r.PostFormValue("csv") // also parses a multipart form (≤ 32 MiB in memory)
	if f, hdr, err := r.FormFile("csv_file"); err == nil {
		defer f.Close()
		if hdr.Size > 1<<20 {
			bulk := Form{Values: map[string]string{}, Errors: map[string]string{"csv": "the file is over 1 MiB; at most 1,000 lines fit in far less"}}
			c.showCredentials(w, r, http.StatusRequestEntityTooLarge, CredentialsView{Bulk: bulk})
			return
		}
		b, err := io.ReadAll(io.LimitReader(f, 1<<20))
		if err != nil {
			c.fail(w, r, err)
			return
		}
		if strings.TrimSpace(string(b)) != "" {
			csv = string(b)
		}
	}
	bulk := Form{Values: map[string]string{"csv": csv}, Errors: map[string]string{}}
	in, lines, msg := parseBulk(bulk.Get("csv"))
	if msg != "" {
		bulk.Errors["csv"] = msg
		c.showCredentials(w, r, http.StatusUnprocessableEntity, CredentialsView{Bulk: bulk})
		return
	}
	creds, pws, err := c.svc.CreateCredentials(r.Context(), actor(r), o.ID, chi.URLParam(r, "inst"), in)
	if err != nil {
		var ve *tenancy.ValidationError
		if !errors.As(err, &ve) {
			c.fail(w, r, err)
			return
		}
		bulk.Errors["csv"] = bulkErrors(ve, lines)
		c.showCredentials(w, r, http.StatusUnprocessableEntity, CredentialsView{Bulk: bulk})
		return
	}
	c.showCredentials(w, r, http.StatusCreated, CredentialsView{Shown: shown(creds, pws)})
}

// bulkErrors writes the service's per-item errors ("credentials[3].username")
// as line numbers of the upload (at most 10 listed).
func bulkErrors(ve *tenancy.ValidationError, lines []int) string {
	var msgs []string
	for _, fe := range ve.Fields {
		field, where := fe.Field, ""
		if strings.HasPrefix(field, "credentials[") {
			if end := strings.Index(field, "]"); end > 0 {
				if i, err := strconv.Atoi(field[len("credentials["):end]); err == nil && i < len(lines) {
					where = fmt.Sprintf("line %d: ", lines[i])
				}
				field = strings.TrimPrefix(field[end+1:], ".")
			}
		}
		msgs = append(msgs, where+field+" "+fe.Message)
		if len(msgs) == 10 {
			msgs = append(msgs, fmt.Sprintf("… and %d more", len(ve.Fields)-10))
			break
		}
	}
	return strings.Join(msgs, "; ")
}

func (c *Console) setCredentialEnabled(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o, instID := orgFrom(r.Context()), chi.URLParam(r, "inst")
	on := r.PostFormValue("enabled") == "true"
	cr, err := c.svc.SetCredentialEnabled(r.Context(), actor(r), o.ID, instID, chi.URLParam(r, "cred"), on)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if on {
		setFlash(w, cr.Username+" enabled.", c.secure)
	} else {
		setFlash(w, cr.Username+" disabled: its connections are closed.", c.secure)
	}
	seeOther(w, r, c.instancePath(o.ID, instID, "/credentials"))
}

func (c *Console) rotateCredential(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o, instID := orgFrom(r.Context()), chi.URLParam(r, "inst")
	cr, pw, err := c.svc.RotateCredential(r.Context(), actor(r), o.ID, instID, chi.URLParam(r, "cred"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.showCredentials(w, r, http.StatusOK, CredentialsView{Shown: shown([]tenancy.Credential{cr}, []string{pw}), Rotated: true})
}

func (c *Console) deleteCredential(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o, instID := orgFrom(r.Context()), chi.URLParam(r, "inst")
	if err := c.svc.DeleteCredential(r.Context(), actor(r), o.ID, instID, chi.URLParam(r, "cred")); err != nil {
		c.fail(w, r, err)
		return
	}
	setFlash(w, "Credential deleted: its connections are closed.", c.secure)
	seeOther(w, r, c.instancePath(o.ID, instID, "/credentials"))
}

// ACL rules.

// ACLView is the ACL rules page.
type ACLView struct {
	Inst  tenancy.Instance
	Rules []tenancy.ACLRule
	Creds map[string]string // credential ID → username
	List  []tenancy.Credential
	Form  Form
}

func (c *Console) aclRules(w http.ResponseWriter, r *http.Request) {
	c.showACL(w, r, http.StatusOK, Form{Values: map[string]string{"effect": tenancy.EffectAllow, "action": tenancy.ActionAll}})
}

func (c *Console) showACL(w http.ResponseWriter, r *http.Request, status int, f Form) {
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	rules, _, err := c.svc.ListACLRules(r.Context(), in.OrgID, in.ID, tenancy.Page{Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	creds, _, err := c.svc.ListCredentials(r.Context(), in.OrgID, in.ID, tenancy.Page{Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := ACLView{Inst: in, Rules: rules, Creds: map[string]string{}, List: creds, Form: f}
	for _, cr := range creds {
		v.Creds[cr.ID] = cr.Username
	}
	p := c.page(w, r, "ACL rules · "+in.Name, "instances")
	c.render(w, r, status, ACLPage(p, v))
}

func (c *Console) createACLRule(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o, instID := orgFrom(r.Context()), chi.URLParam(r, "inst")
	f := formOf(r, "effect", "action", "filter", "credential_id")
	_, err := c.svc.CreateACLRule(r.Context(), actor(r), o.ID, instID, tenancy.ACLRule{
		Effect: f.Get("effect"), Action: f.Get("action"), Filter: f.Get("filter"), CredentialID: f.Get("credential_id")})
	if err != nil {
		if !f.fieldErrors(err, nil) {
			c.fail(w, r, err)
			return
		}
		c.showACL(w, r, http.StatusUnprocessableEntity, f)
		return
	}
	setFlash(w, "Rule added.", c.secure)
	seeOther(w, r, c.instancePath(o.ID, instID, "/acl"))
}

func (c *Console) deleteACLRule(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o, instID := orgFrom(r.Context()), chi.URLParam(r, "inst")
	if err := c.svc.DeleteACLRule(r.Context(), actor(r), o.ID, instID, chi.URLParam(r, "rule")); err != nil {
		c.fail(w, r, err)
		return
	}
	setFlash(w, "Rule deleted.", c.secure)
	seeOther(w, r, c.instancePath(o.ID, instID, "/acl"))
}

func isDefaultRule(r tenancy.ACLRule) bool {
	return r.Effect == tenancy.EffectAllow && r.Action == tenancy.ActionAll && r.Filter == "#" && r.CredentialID == ""
}

// Quotas.

// QuotaField is one quota of the form, with the plan's ceiling.
type QuotaField struct {
	Key   string // JSON name, as the service's field errors name it
	Label string
	Ceil  int64
}

// QuotasView is the quotas page.
type QuotasView struct {
	Inst   tenancy.Instance
	Fields []QuotaField
	Form   Form
}

// quotaKeys lists tenancy.Quotas' JSON names in declaration order.
func quotaKeys() []string {
	t := reflect.TypeOf(tenancy.Quotas{})
	keys := make([]string, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

func quotaMap(q tenancy.Quotas) map[string]int64 {
	b, _ := json.Marshal(q)
	m := map[string]int64{}
	_ = json.Unmarshal(b, &m)
	return m
}

var quotaLabels = map[string]string{
	"max_connections":                   "Connections",
	"max_connects_per_second":           "Connects per second",
	"max_publish_per_second":            "Publishes per second (instance)",
	"max_publish_per_second_per_client": "Publishes per second (per client)",
	"max_bytes_per_second":              "Bytes per second",
	"max_payload_bytes":                 "Payload size (bytes)",
	"max_subscriptions_per_client":      "Subscriptions per client",
	"max_topic_levels":                  "Topic levels",
	"max_retained_messages":             "Retained messages",
	"max_session_expiry_seconds":        "Session expiry (seconds)",
	"max_inflight":                      "In-flight messages per client",
	"max_backlog_seconds":               "Time a client may stay behind before it is disconnected (s)",
	"max_throttle_seconds":              "Time a client may be slowed down by the rate quotas before it is disconnected (s)",
}

func quotaLabel(k string) string {
	if l, ok := quotaLabels[k]; ok {
		return l
	}
	return strings.ReplaceAll(strings.TrimPrefix(k, "max_"), "_", " ")
}

func (c *Console) quotas(w http.ResponseWriter, r *http.Request) {
	c.showQuotas(w, r, http.StatusOK, Form{})
}

func (c *Console) showQuotas(w http.ResponseWriter, r *http.Request, status int, f Form) {
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	cur, ceil, err := c.svc.InstanceQuotas(r.Context(), in.OrgID, in.ID)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	curM, ceilM := quotaMap(cur), quotaMap(ceil)
	v := QuotasView{Inst: in, Form: f}
	if v.Form.Values == nil {
		v.Form = Form{Values: map[string]string{}, Errors: map[string]string{}}
		for k, n := range curM {
			v.Form.Values[k] = strconv.FormatInt(n, 10)
		}
	}
	for _, k := range quotaKeys() {
		v.Fields = append(v.Fields, QuotaField{Key: k, Label: quotaLabel(k), Ceil: ceilM[k]})
	}
	p := c.page(w, r, "Quotas · "+in.Name, "instances")
	c.render(w, r, status, QuotasPage(p, v))
}

func (c *Console) setQuotas(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o, instID := orgFrom(r.Context()), chi.URLParam(r, "inst")
	keys := quotaKeys()
	f := formOf(r, keys...)
	m := map[string]int64{}
	for _, k := range keys {
		s := f.Get(k)
		if s == "" {
			continue // the plan's value
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			f.Errors[k] = "must be a whole number"
			continue
		}
		m[k] = n
	}
	if len(f.Errors) > 0 {
		c.showQuotas(w, r, http.StatusUnprocessableEntity, f)
		return
	}
	b, _ := json.Marshal(m)
	var q tenancy.Quotas
	if err := json.Unmarshal(b, &q); err != nil {
		// A value too large for its field.
		for _, k := range keys {
			f.Errors[k] = "is too large"
		}
		c.showQuotas(w, r, http.StatusUnprocessableEntity, f)
		return
	}
	if _, err := c.svc.SetInstanceQuotas(r.Context(), actor(r), o.ID, instID, q); err != nil {
		if !f.fieldErrors(err, nil) {
			c.fail(w, r, err)
			return
		}
		c.showQuotas(w, r, http.StatusUnprocessableEntity, f)
		return
	}
	setFlash(w, "Quotas saved: they apply to live connections too.", c.secure)
	seeOther(w, r, c.instancePath(o.ID, instID, "/quotas"))
}

// Connection snippets.

// Snippets are copy-paste client examples for an instance.
type Snippets struct {
	Host, Port   string
	TLS          bool
	Username     string // the MQTT username: <user>@<instance>
	Password     string
	WSURL        string
	Mosquitto    string
	Python       string
	Go           string
	JS           string
	HasEndpoints bool
	// RateNote says what the instance's rate quotas are and what a client
	// that exceeds them sees.
	RateNote string
}

// rateNote describes an instance's rate quotas as its devices meet them.
func rateNote(q tenancy.Quotas) string {
	var per []string
	if q.MaxPublishPerSecondPerClient > 0 {
		per = append(per, fmt.Sprintf("%d publishes a second per client", q.MaxPublishPerSecondPerClient))
	}
	if q.MaxPublishPerSecond > 0 {
		per = append(per, fmt.Sprintf("%d a second for the whole instance", q.MaxPublishPerSecond))
	}
	if q.MaxBytesPerSecond > 0 {
		per = append(per, formatNumber(float64(q.MaxBytesPerSecond))+" bytes of payload a second")
	}
	hold := q.MaxThrottleSeconds
	if hold <= 0 {
		hold = 30
	}
	limits := "no publish rate limit"
	if len(per) > 0 {
		limits = "up to " + strings.Join(per, ", ")
	}
	return fmt.Sprintf("This instance accepts %s (a second's worth may come at once). "+
		"A client that publishes faster is slowed down, not refused: the broker reads its connection more slowly, "+
		"so its publish calls (and the PUBACKs of QoS 1/2) take longer, and nothing it sent is dropped. "+
		"A client held back for more than %d s in a row is disconnected: MQTT 5 clients get DISCONNECT with reason 0x96 "+
		"(message rate too high), MQTT 3.1.1 connections are closed.", limits, hold)
}

// endpointHostPort splits an endpoint URL ("mqtt://host:1883").
func endpointHostPort(raw string) (host, port string, ok bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return "", "", false
	}
	port = u.Port()
	if port == "" {
		port = map[string]string{"mqtt": "1883", "mqtts": "8883", "ws": "80", "wss": "443"}[u.Scheme]
	}
	return u.Hostname(), port, true
}

func snippetsFor(in tenancy.Instance, user, password string) Snippets {
	s := Snippets{Username: mqttUsername(user, in.ID), Password: password, RateNote: rateNote(in.Quotas)}
	// Plain MQTT first when the node serves it: a development node's TLS
	// certificate is self-signed, so a TLS snippet would not work as is.
	for _, key := range []string{"mqtt", "mqtts"} {
		if h, p, ok := endpointHostPort(in.Endpoints[key]); ok {
			s.Host, s.Port, s.TLS, s.HasEndpoints = h, p, key == "mqtts", true
			break
		}
	}
	for _, key := range []string{"ws", "wss"} {
		if v := in.Endpoints[key]; v != "" {
			s.WSURL = v
			break
		}
	}
	if !s.HasEndpoints {
		s.Host, s.Port = "<host>", "1883"
	}
	q := shellQuote
	tlsFlag, scheme, pyTLS := "", "tcp", ""
	if s.TLS {
		tlsFlag, scheme, pyTLS = " --capath /etc/ssl/certs", "ssl", "client.tls_set()\n"
	}
	s.Mosquitto = fmt.Sprintf(`# receive (MQTT 5)
mosquitto_sub -V mqttv5 -h %s -p %s%s \
  -u %s -P %s \
  -i my-subscriber -t 'test/#' -v

# send
mosquitto_pub -V mqttv5 -h %s -p %s%s \
  -u %s -P %s \
  -i my-publisher -t test/hello -m 'hello'`,
		s.Host, s.Port, tlsFlag, q(s.Username), q(password), s.Host, s.Port, tlsFlag, q(s.Username), q(password))
	s.Python = fmt.Sprintf(`# pip install paho-mqtt
import paho.mqtt.client as mqtt

def on_connect(client, userdata, flags, reason_code, properties):
    print("connected:", reason_code)
    client.subscribe("test/#")
    client.publish("test/hello", "hello")

def on_message(client, userdata, msg):
    print(msg.topic, msg.payload.decode())

client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="my-device", protocol=mqtt.MQTTv5)
client.username_pw_set(%s, %s)
%sclient.on_connect = on_connect
client.on_message = on_message
client.connect(%s, %s)
client.loop_forever()`, strconv.Quote(s.Username), strconv.Quote(password), pyTLS, strconv.Quote(s.Host), s.Port)
	s.Go = fmt.Sprintf(`// go get github.com/eclipse/paho.mqtt.golang
package main

import (
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func main() {
	opts := mqtt.NewClientOptions().
		AddBroker(%s).
		SetClientID("my-device").
		SetUsername(%s).
		SetPassword(%s)
	c := mqtt.NewClient(opts)
	if t := c.Connect(); t.Wait() && t.Error() != nil {
		panic(t.Error())
	}
	c.Subscribe("test/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		fmt.Printf("%%s %%s\n", m.Topic(), m.Payload())
	}).Wait()
	c.Publish("test/hello", 1, false, "hello").Wait()
	time.Sleep(time.Second)
	c.Disconnect(250)
}`, strconv.Quote(scheme+"://"+s.Host+":"+s.Port), strconv.Quote(s.Username), strconv.Quote(password))
	jsURL := s.WSURL
	if jsURL == "" {
		jsURL = map[bool]string{true: "mqtts", false: "mqtt"}[s.TLS] + "://" + s.Host + ":" + s.Port
	}
	s.JS = fmt.Sprintf(`// npm install mqtt
const mqtt = require("mqtt");

const client = mqtt.connect(%s, {
  username: %s,
  password: %s,
  clientId: "my-device",
  protocolVersion: 5,
});
client.on("connect", () => {
  client.subscribe("test/#");
  client.publish("test/hello", "hello");
});
client.on("message", (topic, payload) => console.log(topic, payload.toString()));`,
		strconv.Quote(jsURL), strconv.Quote(s.Username), strconv.Quote(password))
	return s
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// endpointList is the instance's endpoints in a stable order.
func endpointList(m map[string]string) [][2]string {
	order := map[string]int{"mqtt": 0, "mqtts": 1, "ws": 2, "wss": 3}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		oi, iok := order[keys[i]]
		oj, jok := order[keys[j]]
		if iok != jok {
			return iok
		}
		if oi != oj {
			return oi < oj
		}
		return keys[i] < keys[j]
	})
	out := make([][2]string, len(keys))
	for i, k := range keys {
		out[i] = [2]string{k, m[k]}
	}
	return out
}

func rangeHref(p Page, instID, key string) string {
	return p.OrgPath("/instances/" + instID + "?range=" + key)
}

func credUsername(v ACLView, id string) string {
	if id == "" {
		return "all credentials"
	}
	if u, ok := v.Creds[id]; ok {
		return u
	}
	return id
}

func expiresLabel(t *time.Time) string { return whenPtr(t, "never") }
