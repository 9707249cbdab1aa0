package console

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/tenancy"
)

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

func expiresLabel(t *time.Time) string { return whenPtr(t, "never") }
