package console

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/tenancy"
)

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
