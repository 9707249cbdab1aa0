package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/aeriemq/aerie/api"
)

// hostileCase is one request of the sweep.
type hostileCase struct {
	name        string
	method      string
	path        string // already escaped
	contentType string
	body        []byte
	header      map[string]string
}

// Hostile values. Strings are raw bytes; path/query cases escape them.
var (
	hostileStrings = map[string]string{
		"NUL":           "a\x00b",
		"invalid UTF-8": "a\xff\xfeb",
		"control":       "a\x01\x1bb",
		"overlong":      strings.Repeat("a", 16<<10), // past every path/query/header bound
	}
	hostileNumbers = []string{"1e400", "-1e400", "99999999999999999999", "-99999999999999999999", "2147483648", "1.5"}
	// bad time ranges for the metrics and usage queries.
	hostileRanges = []url.Values{
		{"from": {"0001-01-01T00:00:00Z"}, "to": {"9999-12-31T00:00:00Z"}, "step": {"1290h"}},
		{"from": {"0001-01-01T00:00:00Z"}, "to": {"9999-12-31T00:00:00Z"}, "step": {"10s"}},
		{"from": {"1000-01-01T00:00:00Z"}, "to": {"1000-01-02T00:00:00Z"}, "step": {"2562047h"}},
		{"from": {"2030-01-01T00:00:00Z"}, "to": {"2020-01-01T00:00:00Z"}},
		{"step": {"-10s"}}, {"step": {"99999999999999h"}}, {"step": {"1e400s"}},
		{"from": {"99999-01-01T00:00:00Z"}}, {"to": {"2020-13-45T25:61:61Z"}},
		{"period": {"99999-99"}}, {"period": {"0000-00"}}, {"period": {"2024-13"}}, {"period": {"-001-01"}},
		{"limit": {"99999999999999999999"}}, {"limit": {"-1"}}, {"limit": {"1e400"}},
		{"cursor": {"eyJhIjoiXHUwMDAwIn0"}}, // base64 of {"a":"\u0000"}
	}
)

// binaryFields are JSON properties that carry bytes, not text (a plain
// publish payload), where NUL is legal (they are tagged aerie:"binary").
var binaryFields = map[string]bool{"payload": true}

// TestHostileInputSweep walks every path and operation of openapi.yaml and
// sends hostile values in the path, the query, headers and the JSON body,
// authenticated as the org's owner (or the operator for /v1/admin) with the
// IDs of real resources, so each request reaches as deep as it can. No
// answer may be a 5xx, and every refusal is problem+json. A route added to
// the spec is covered without anyone touching this test.
func TestHostileInputSweep(t *testing.T) {
	e := newEnv(t)
	doc, _ := loadSpec(t)
	owner := e.signup(t, "owner@example.com", "Sweep")
	org := owner.Org.ID
	inst := e.createInstance(t, owner.AccessToken, org, "sweep")
	cred := e.createCredential(t, owner.AccessToken, org, inst.ID, "dev")
	key := e.createKey(t, owner.AccessToken, org, "k", "admin")
	var rule struct{ ID string }
	e.do(t, req{method: "POST", path: "/v1/orgs/" + org + "/instances/" + inst.ID + "/acl-rules", token: owner.AccessToken,
		body: map[string]any{"effect": "allow", "action": "publish", "filter": "a/#"}}).expect(t, http.StatusCreated).decode(t, &rule)
	ids := map[string]string{"org_id": org, "instance_id": inst.ID, "credential_id": cred.ID, "key_id": key.ID, "rule_id": rule.ID,
		"user_id": owner.User.ID, "invoice_id": "inv_0000", "node_id": e.nodeID}

	paths := doc.Paths.Map()
	var names []string
	for p := range paths {
		names = append(names, p)
	}
	sort.Strings(names)
	ops, sent := 0, 0
	for _, p := range names {
		item := paths[p]
		for method, op := range item.Operations() {
			ops++
			token := owner.AccessToken
			if strings.HasPrefix(p, "/v1/admin/") {
				token = operatorToken
			}
			for _, c := range hostileCases(t, p, method, item, op, ids) {
				sent++
				checkHostile(t, e, token, c)
			}
		}
	}
	if ops < 40 {
		t.Fatalf("the sweep found only %d operations in openapi.yaml", ops)
	}
	t.Logf("%d operations, %d hostile requests, none answered 5xx", ops, sent)
	// The real resources survived (no hostile request changed them).
	e.do(t, req{method: "GET", path: "/v1/orgs/" + org + "/instances/" + inst.ID + "/credentials/" + cred.ID, token: owner.AccessToken}).expect(t, http.StatusOK)
}

// hostileCases builds the sweep's requests for one operation.
func hostileCases(t *testing.T, pattern, method string, item *openapi3.PathItem, op *openapi3.Operation, ids map[string]string) []hostileCase {
	t.Helper()
	var pathParams, queryParams, numericParams []string
	for _, ps := range []openapi3.Parameters{item.Parameters, op.Parameters} {
		for _, pr := range ps {
			switch pr.Value.In {
			case "path":
				pathParams = append(pathParams, pr.Value.Name)
			case "query":
				queryParams = append(queryParams, pr.Value.Name)
				if s := pr.Value.Schema; s != nil && s.Value != nil && (s.Value.Type.Is("integer") || s.Value.Type.Is("number")) {
					numericParams = append(numericParams, pr.Value.Name)
				}
			}
		}
	}
	realPath := func(override map[string]string) string {
		s := pattern
		for _, name := range pathParams {
			v, ok := override[name]
			if !ok {
				v = url.PathEscape(ids[name])
			}
			s = strings.ReplaceAll(s, "{"+name+"}", v)
		}
		if strings.Contains(s, "{") {
			t.Fatalf("%s: path parameter without a test ID", pattern)
		}
		return s
	}
	base := realPath(nil)
	var body []byte
	var props []string
	if op.RequestBody != nil && op.RequestBody.Value != nil {
		if mt := op.RequestBody.Value.Content.Get("application/json"); mt != nil && mt.Schema != nil {
			body, props = sampleFromSchema(mt.Schema.Value)
		}
	}
	withBody := func(c hostileCase) hostileCase {
		if c.body == nil && body != nil {
			c.body, c.contentType = body, "application/json"
		}
		return c
	}
	label := method + " " + pattern + " "
	var out []hostileCase

	// Path parameters.
	for _, name := range pathParams {
		for hn, hv := range hostileStrings {
			out = append(out, withBody(hostileCase{name: label + "path " + name + " " + hn, method: method,
				path: realPath(map[string]string{name: url.PathEscape(hv)})}))
		}
	}
	// Query parameters: declared ones and one nobody reads.
	for _, name := range append(queryParams, "x") {
		for hn, hv := range hostileStrings {
			out = append(out, withBody(hostileCase{name: label + "query " + name + " " + hn, method: method,
				path: base + "?" + url.QueryEscape(name) + "=" + url.QueryEscape(hv)}))
		}
	}
	out = append(out, withBody(hostileCase{name: label + "query bad escape", method: method, path: base + "?x=%zz"}))
	// Numbers and time ranges, only where the operation reads such query
	// parameters (elsewhere they are ignored and the request would succeed).
	if len(queryParams) > 0 {
		for _, name := range numericParams {
			for _, n := range hostileNumbers {
				out = append(out, withBody(hostileCase{name: label + "query " + name + "=" + n, method: method,
					path: base + "?" + url.QueryEscape(name) + "=" + url.QueryEscape(n)}))
			}
		}
		for _, rq := range hostileRanges {
			declared := true
			for k := range rq {
				declared = declared && contains(queryParams, k)
			}
			if declared {
				out = append(out, withBody(hostileCase{name: label + "range " + rq.Encode(), method: method, path: base + "?" + rq.Encode()}))
			}
		}
	}
	// Headers the API reads, and one it does not.
	for _, h := range []string{"Idempotency-Key", "If-Match", "X-Request-Id", "X-Hostile"} {
		for hn, hv := range hostileStrings {
			if hn == "NUL" || hn == "control" {
				continue // net/http refuses to send them (and to read them: its own 400)
			}
			out = append(out, withBody(hostileCase{name: label + "header " + h + " " + hn, method: method, path: base, header: map[string]string{h: hv}}))
		}
	}
	// JSON bodies.
	if body != nil {
		out = append(out,
			hostileCase{name: label + "charset utf-16", method: method, path: base, contentType: "application/json; charset=utf-16", body: body},
			hostileCase{name: label + "charset latin1", method: method, path: base, contentType: "application/json; charset=iso-8859-1", body: body},
			hostileCase{name: label + "not json", method: method, path: base, contentType: "application/json", body: []byte("{nope")},
			hostileCase{name: label + "invalid UTF-8 body", method: method, path: base, contentType: "application/json", body: []byte("{\"\xff\": 1}")},
			hostileCase{name: label + "NUL key", method: method, path: base, contentType: "application/json", body: []byte(`{"a\u0000": 1}`)},
			hostileCase{name: label + "over 1 MiB", method: method, path: base, contentType: "application/json",
				body: []byte(`{"x": "` + strings.Repeat("a", api.MaxBodyBytes) + `"}`)},
			hostileCase{name: label + "deep nesting", method: method, path: base, contentType: "application/json",
				body: []byte(strings.Repeat("[", 20000) + strings.Repeat("]", 20000))},
		)
		if len(props) == 0 {
			props = []string{"x"}
		}
		// Duplicate key: the first property twice.
		dup := bytes.Replace(body, []byte("{"), []byte(fmt.Sprintf(`{%q: %s, `, props[0], "null")), 1)
		if bytes.Equal(body, []byte("{}")) {
			dup = []byte(fmt.Sprintf(`{%q: null, %q: null}`, props[0], props[0]))
		}
		out = append(out, hostileCase{name: label + "duplicate key " + props[0], method: method, path: base, contentType: "application/json", body: dup})
		for _, prop := range props {
			values := map[string]string{
				"NUL":            `"a\u0000b"`,
				"invalid UTF-8":  "\"a\xff\xfeb\"",
				"1 MB string":    `"` + strings.Repeat("a", api.MaxBodyBytes-4096) + `"`,
				"lone surrogate": `"\ud800"`,
			}
			for _, n := range hostileNumbers[:4] {
				values[n] = n
			}
			if binaryFields[prop] {
				delete(values, "NUL") // bytes, not text: NUL is a legal payload byte
			}
			for vn, raw := range values {
				out = append(out, hostileCase{name: label + "body " + prop + " " + vn, method: method, path: base, contentType: "application/json",
					body: withProp(t, body, prop, raw)})
			}
		}
	}
	return out
}

// sampleFromSchema builds a plausible body from an object schema (one value
// per property, by type) and lists the property names.
func sampleFromSchema(s *openapi3.Schema) ([]byte, []string) {
	m := map[string]any{}
	var props []string
	for name, ps := range s.Properties {
		props = append(props, name)
		v := ps.Value
		switch {
		case v == nil:
			m[name] = "x"
		case v.Type.Is("integer"), v.Type.Is("number"):
			m[name] = 1
		case v.Type.Is("boolean"):
			m[name] = false
		case v.Type.Is("array"):
			m[name] = []any{}
		case v.Type.Is("object"):
			m[name] = map[string]any{}
		default:
			m[name] = "x"
			if len(v.Enum) > 0 {
				m[name] = v.Enum[0]
			}
		}
	}
	sort.Strings(props)
	b, _ := json.Marshal(m)
	return b, props
}

// withProp returns body with prop's value replaced by raw JSON text.
func withProp(t *testing.T, body []byte, prop, raw string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, prop)
	rest, _ := json.Marshal(m)
	key, _ := json.Marshal(prop)
	if len(m) == 0 {
		return []byte("{" + string(key) + ":" + raw + "}")
	}
	return []byte("{" + string(key) + ":" + raw + "," + string(rest[1:]))
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// checkHostile sends one case and asserts a 4xx problem+json answer.
func checkHostile(t *testing.T, e *env, token string, c hostileCase) {
	t.Helper()
	var rd io.Reader
	if c.body != nil {
		rd = bytes.NewReader(c.body)
	}
	r, err := http.NewRequest(c.method, e.srv.URL+c.path, rd)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	if c.contentType != "" {
		r.Header.Set("Content-Type", c.contentType)
	}
	r.Header.Set("Authorization", "Bearer "+token)
	for k, v := range c.header {
		r.Header[k] = []string{v}
	}
	res, err := e.srv.Client().Do(r)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	short := string(b)
	if len(short) > 300 {
		short = short[:300]
	}
	if res.StatusCode >= 500 || res.StatusCode < 400 {
		t.Errorf("%s: status %d, want a 4xx: %s", c.name, res.StatusCode, short)
		return
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s: status %d with content type %q, want application/problem+json: %s", c.name, res.StatusCode, ct, short)
		return
	}
	var p api.Problem
	if err := json.Unmarshal(b, &p); err != nil || p.Status != res.StatusCode || !strings.HasPrefix(p.Type, api.ProblemTypeBase) {
		t.Errorf("%s: bad problem body %s (%v)", c.name, short, err)
	}
}
