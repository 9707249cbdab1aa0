package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/aeriemq/aerie/sdk"
	"github.com/aeriemq/aerie/tenancy"
)

// File is an aerie.yaml: the instances an org should have, with their
// credentials, ordered ACL rules and quotas.
type File struct {
	Instances []InstanceSpec `yaml:"instances"`
}

// InstanceSpec is one instance of the file.
type InstanceSpec struct {
	Name               string           `yaml:"name"`
	AllowAnonymous     *bool            `yaml:"allow_anonymous,omitempty"`
	DeletionProtection *bool            `yaml:"deletion_protection,omitempty"`
	Quotas             map[string]int64 `yaml:"quotas,omitempty"`
	Credentials        []CredentialSpec `yaml:"credentials,omitempty"`
	// ACL, when present, is the instance's whole ordered rule list; absent
	// leaves the rules as they are.
	ACL *[]RuleSpec `yaml:"acl,omitempty"`
}

// CredentialSpec is one device credential. Its password is generated
// unless PasswordEnv or PasswordFile names where the caller's own is.
type CredentialSpec struct {
	Username        string `yaml:"username"`
	ClientIDPattern string `yaml:"client_id_pattern,omitempty"`
	Enabled         *bool  `yaml:"enabled,omitempty"`
	PasswordEnv     string `yaml:"password_env,omitempty"`
	PasswordFile    string `yaml:"password_file,omitempty"`

	password string // resolved supplied password
}

// RuleSpec is one ACL rule; Credential names a credential of the same
// instance by username (empty: every device).
type RuleSpec struct {
	Effect     string `yaml:"effect"`
	Action     string `yaml:"action"`
	Filter     string `yaml:"filter"`
	Credential string `yaml:"credential,omitempty"`
}

func (r RuleSpec) String() string {
	s := r.Effect + " " + r.Action + " " + r.Filter
	if r.Credential != "" {
		s += " (" + r.Credential + ")"
	}
	return s
}

// quotaKeys are the quota names a file may set.
var quotaKeys = map[string]bool{"max_connections": true, "max_connects_per_second": true, "max_publish_per_second": true,
	"max_publish_per_second_per_client": true, "max_bytes_per_second": true, "max_payload_bytes": true,
	"max_subscriptions_per_client": true, "max_topic_levels": true, "max_retained_messages": true,
	"max_session_expiry_seconds": true, "max_inflight": true, "max_backlog_seconds": true}

// ValidationErrors lists every problem of a file.
type ValidationErrors []string

func (v ValidationErrors) Error() string {
	return "invalid file:\n  " + strings.Join(v, "\n  ")
}

func validUsername(u string) bool {
	if u == "" || len(u) > 128 || u == "token" {
		return false
	}
	for _, r := range u {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.', r == ':':
		default:
			return false
		}
	}
	return true
}

// LoadFile reads and validates a file whole: nothing is changed when any
// part of it is wrong. Supplied passwords are read from the environment or
// files here.
func LoadFile(path string, getenv func(string) string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if err := f.validate(getenv); err != nil {
		return nil, err
	}
	return &f, nil
}

func (f *File) validate(getenv func(string) string) error {
	var errs ValidationErrors
	add := func(path, format string, a ...any) { errs = append(errs, path+": "+fmt.Sprintf(format, a...)) }
	names := map[string]bool{}
	for i := range f.Instances {
		in := &f.Instances[i]
		p := fmt.Sprintf("instances[%d]", i)
		if n := strings.TrimSpace(in.Name); n == "" || n != in.Name || len([]rune(n)) > 100 {
			add(p+".name", "must be 1 to 100 characters without surrounding spaces")
		}
		if names[in.Name] {
			add(p+".name", "%q appears twice", in.Name)
		}
		names[in.Name] = true
		keys := make([]string, 0, len(in.Quotas))
		for k := range in.Quotas {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !quotaKeys[k] {
				add(p+".quotas."+k, "is not a quota")
			} else if in.Quotas[k] < 0 {
				add(p+".quotas."+k, "must be 0 or more")
			}
		}
		users := map[string]bool{}
		for j := range in.Credentials {
			c := &in.Credentials[j]
			cp := fmt.Sprintf("%s.credentials[%d]", p, j)
			if !validUsername(c.Username) {
				add(cp+".username", `must be 1 to 128 of a-z A-Z 0-9 - _ . : and not "token"`)
			}
			if users[c.Username] {
				add(cp+".username", "%q appears twice", c.Username)
			}
			users[c.Username] = true
			if len(c.ClientIDPattern) > 256 {
				add(cp+".client_id_pattern", "must be at most 256 characters")
			}
			switch {
			case c.PasswordEnv != "" && c.PasswordFile != "":
				add(cp, "password_env and password_file are exclusive")
			case c.PasswordEnv != "":
				c.password = getenv(c.PasswordEnv)
				if c.password == "" {
					add(cp+".password_env", "$%s is not set", c.PasswordEnv)
				}
			case c.PasswordFile != "":
				b, err := os.ReadFile(c.PasswordFile)
				if err != nil {
					add(cp+".password_file", "%v", err)
				}
				c.password = strings.TrimRight(string(b), "\r\n")
			}
			if c.password != "" && (len(c.password) < tenancy.MinDevicePasswordLength || len(c.password) > tenancy.MaxDevicePasswordLength) {
				add(cp, "the supplied password must be %d to %d bytes", tenancy.MinDevicePasswordLength, tenancy.MaxDevicePasswordLength)
			}
		}
		if in.ACL != nil {
			if len(*in.ACL) > tenancy.MaxACLRules {
				add(p+".acl", "at most %d rules", tenancy.MaxACLRules)
			}
			for j, r := range *in.ACL {
				rp := fmt.Sprintf("%s.acl[%d]", p, j)
				if r.Effect != "allow" && r.Effect != "deny" {
					add(rp+".effect", "must be allow or deny")
				}
				if r.Action != "publish" && r.Action != "subscribe" && r.Action != "all" {
					add(rp+".action", "must be publish, subscribe or all")
				}
				if !tenancy.ValidACLFilter(r.Filter) {
					add(rp+".filter", "%q is not a valid MQTT topic filter", r.Filter)
				}
				if r.Credential != "" && !users[r.Credential] {
					add(rp+".credential", "%q is not a credential of this instance in the file", r.Credential)
				}
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// Change is one line of a plan.
type Change struct {
	Op     byte   // '+', '~' or '-'
	What   string // e.g. "credential home/dev-1"
	Detail string
}

// Plan is what apply would do, and what it needs to do it.
type Plan struct {
	Changes   []Change
	prune     bool
	instances []*instancePlan
	deletes   []sdk.Instance // pruned instances
}

type instancePlan struct {
	spec        *InstanceSpec
	cur         *sdk.Instance // nil: to create
	update      *sdk.UpdateInstanceJSONRequestBody
	create      []CredentialSpec
	enable      map[string]bool // credential ID → enabled
	replace     []sdk.Credential
	prune       []sdk.Credential
	credIDs     map[string]string // username → ID (existing)
	acl         bool              // PUT the file's list
	quotas      map[string]int64  // PUT these (nil: unchanged)
	curQuotaRaw map[string]int64
}

// Counts returns the numbers of additions, changes and deletions.
func (p *Plan) Counts() (add, change, del int) {
	for _, c := range p.Changes {
		switch c.Op {
		case '+':
			add++
		case '~':
			change++
		case '-':
			del++
		}
	}
	return
}

func (p *Plan) add(op byte, what, detail string) {
	p.Changes = append(p.Changes, Change{Op: op, What: what, Detail: detail})
}

// Print writes the plan as a diff and a summary line.
func (p *Plan) Print(w io.Writer) {
	for _, c := range p.Changes {
		line := string(c.Op) + " " + c.What
		if c.Op == '-' {
			line = "- " + c.What
		}
		if c.Detail != "" {
			line += "  " + c.Detail
		}
		fmt.Fprintln(w, line)
	}
	a, c, d := p.Counts()
	if a+c+d == 0 {
		fmt.Fprintln(w, "No changes. The org matches the file.")
		return
	}
	fmt.Fprintf(w, "Plan: %d to add, %d to change, %d to destroy.\n", a, c, d)
}

// defaultRules is what a new instance starts with (one rule allowing
// everything); the plan compares the file's list with it.
var defaultRules = []RuleSpec{{Effect: "allow", Action: "all", Filter: "#"}}

// MakePlan compares the file with the org. With prune, instances and
// credentials the file does not list are deleted.
func MakePlan(ctx context.Context, c *sdk.API, org string, f *File, prune bool) (*Plan, error) {
	cur, err := sdk.Collect(ctx, c.InstancesPages(org))
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	byName := map[string]*sdk.Instance{}
	for i := range cur {
		byName[cur[i].Name] = &cur[i]
	}
	p := &Plan{prune: prune}
	for i := range f.Instances {
		spec := &f.Instances[i]
		ip := &instancePlan{spec: spec, cur: byName[spec.Name], enable: map[string]bool{}, credIDs: map[string]string{}}
		p.instances = append(p.instances, ip)
		if err := planInstance(ctx, c, org, p, ip); err != nil {
			return nil, err
		}
	}
	if prune {
		listed := map[string]bool{}
		for _, in := range f.Instances {
			listed[in.Name] = true
		}
		for _, in := range cur {
			if !listed[in.Name] && in.Status != sdk.InstanceStatusDeleting {
				p.deletes = append(p.deletes, in)
				p.add('-', "instance "+in.Name, in.Id)
			}
		}
	}
	return p, nil
}

func planInstance(ctx context.Context, c *sdk.API, org string, p *Plan, ip *instancePlan) error {
	spec := ip.spec
	name := spec.Name
	var curCreds []sdk.Credential
	curRules := defaultRules
	if ip.cur == nil {
		p.add('+', "instance "+name, "")
	} else {
		in := ip.cur
		var upd sdk.UpdateInstanceJSONRequestBody
		var diffs []string
		if spec.AllowAnonymous != nil && *spec.AllowAnonymous != in.AllowAnonymous {
			upd.AllowAnonymous = spec.AllowAnonymous
			diffs = append(diffs, fmt.Sprintf("allow_anonymous: %v → %v", in.AllowAnonymous, *spec.AllowAnonymous))
		}
		if spec.DeletionProtection != nil && *spec.DeletionProtection != in.DeletionProtection {
			upd.DeletionProtection = spec.DeletionProtection
			diffs = append(diffs, fmt.Sprintf("deletion_protection: %v → %v", in.DeletionProtection, *spec.DeletionProtection))
		}
		if len(diffs) > 0 {
			ip.update = &upd
			p.add('~', "instance "+name, strings.Join(diffs, ", "))
		}
		var err error
		if curCreds, err = sdk.Collect(ctx, c.CredentialsPages(org, in.Id)); err != nil {
			return fmt.Errorf("instance %s: list credentials: %w", name, err)
		}
		if spec.ACL != nil {
			rules, err := sdk.Collect(ctx, c.ACLRulesPages(org, in.Id))
			if err != nil {
				return fmt.Errorf("instance %s: list acl rules: %w", name, err)
			}
			byID := map[string]string{}
			for _, cr := range curCreds {
				byID[cr.Id] = cr.Username
			}
			curRules = make([]RuleSpec, len(rules))
			for i, r := range rules {
				curRules[i] = RuleSpec{Effect: string(r.Effect), Action: string(r.Action), Filter: r.Filter}
				if r.CredentialId != nil {
					curRules[i].Credential = byID[*r.CredentialId]
					if curRules[i].Credential == "" {
						curRules[i].Credential = *r.CredentialId
					}
				}
			}
		}
	}
	// Credentials.
	have := map[string]sdk.Credential{}
	for _, cr := range curCreds {
		have[cr.Username] = cr
		ip.credIDs[cr.Username] = cr.Id
	}
	want := map[string]bool{}
	for _, cs := range spec.Credentials {
		want[cs.Username] = true
		cr, ok := have[cs.Username]
		src := "generated password"
		if cs.password != "" {
			src = "supplied password"
		}
		switch {
		case !ok:
			ip.create = append(ip.create, cs)
			p.add('+', "credential "+name+"/"+cs.Username, src)
		case cr.ClientIdPattern != cs.ClientIDPattern:
			ip.replace = append(ip.replace, cr)
			ip.create = append(ip.create, cs)
			p.add('~', "credential "+name+"/"+cs.Username, fmt.Sprintf("client_id_pattern %q → %q (replaced: new %s)", cr.ClientIdPattern, cs.ClientIDPattern, src))
		case cs.Enabled != nil && *cs.Enabled != cr.Enabled:
			ip.enable[cr.Id] = *cs.Enabled
			p.add('~', "credential "+name+"/"+cs.Username, fmt.Sprintf("enabled: %v → %v", cr.Enabled, *cs.Enabled))
		}
	}
	if spec.ACL != nil {
		des := *spec.ACL
		for i := 0; i < len(des) || i < len(curRules); i++ {
			what := fmt.Sprintf("acl %s[%d]", name, i)
			switch {
			case i >= len(curRules):
				p.add('+', what, des[i].String())
				ip.acl = true
			case i >= len(des):
				p.add('-', what, curRules[i].String())
				ip.acl = true
			case des[i] != curRules[i]:
				p.add('~', what, curRules[i].String()+" → "+des[i].String())
				ip.acl = true
			}
		}
		// A replaced credential gets a new ID: its rules must be re-sent.
		if len(ip.replace) > 0 {
			ip.acl = true
		}
	}
	if len(spec.Quotas) > 0 {
		cur := map[string]int64{}
		if ip.cur != nil {
			r, err := c.GetQuotasWithResponse(ctx, org, ip.cur.Id)
			if err := sdk.Check(r, err); err != nil {
				return fmt.Errorf("instance %s: quotas: %w", name, err)
			}
			if err := json.Unmarshal(r.Body, &cur); err != nil {
				return fmt.Errorf("instance %s: quotas: %w", name, err)
			}
		}
		ip.curQuotaRaw = cur
		keys := make([]string, 0, len(spec.Quotas))
		for k := range spec.Quotas {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var diffs []string
		for _, k := range keys {
			if v, ok := cur[k]; !ok || v != spec.Quotas[k] || ip.cur == nil {
				diffs = append(diffs, fmt.Sprintf("%s: %s → %d", k, quotaString(cur, k, ip.cur == nil), spec.Quotas[k]))
			}
		}
		if len(diffs) > 0 {
			ip.quotas = spec.Quotas
			p.add('~', "quotas "+name, strings.Join(diffs, ", "))
		}
	}
	if ip.cur != nil && pruneOf(p) {
		for _, cr := range curCreds {
			if !want[cr.Username] {
				ip.prune = append(ip.prune, cr)
				p.add('-', "credential "+name+"/"+cr.Username, "")
			}
		}
	}
	return nil
}

func quotaString(cur map[string]int64, k string, fresh bool) string {
	if fresh {
		return "plan"
	}
	if v, ok := cur[k]; ok {
		return strconv.FormatInt(v, 10)
	}
	return "unset"
}

// pruneOf reports whether the plan deletes what the file does not list.
func pruneOf(p *Plan) bool { return p.prune }

// Secret is a generated password, written once after apply.
type Secret struct {
	Instance     string `yaml:"instance" json:"instance"`
	InstanceID   string `yaml:"instance_id" json:"instance_id"`
	Username     string `yaml:"username" json:"username"`
	MQTTUsername string `yaml:"mqtt_username" json:"mqtt_username"`
	Password     string `yaml:"password" json:"password"`
}

// Apply makes the plan's changes and returns the generated passwords.
func Apply(ctx context.Context, c *sdk.API, org string, p *Plan, log io.Writer) ([]Secret, error) {
	var secrets []Secret
	for _, ip := range p.instances {
		name := ip.spec.Name
		if ip.cur == nil {
			body := sdk.CreateInstanceJSONRequestBody{Name: name, AllowAnonymous: ip.spec.AllowAnonymous, DeletionProtection: ip.spec.DeletionProtection}
			r, err := c.CreateInstanceWithResponse(ctx, org, nil, body)
			if err := sdk.Check(r, err); err != nil {
				return secrets, fmt.Errorf("create instance %s: %w", name, err)
			}
			ip.cur = r.JSON201
			fmt.Fprintf(log, "created instance %s (%s)\n", name, ip.cur.Id)
		} else if ip.update != nil {
			r, err := c.UpdateInstanceWithResponse(ctx, org, ip.cur.Id, nil, *ip.update)
			if err := sdk.Check(r, err); err != nil {
				return secrets, fmt.Errorf("update instance %s: %w", name, err)
			}
		}
		id := ip.cur.Id
		for _, cr := range ip.replace {
			r, err := c.DeleteCredentialWithResponse(ctx, org, id, cr.Id)
			if err := sdk.Check(r, err); err != nil && !sdk.IsNotFound(err) {
				return secrets, fmt.Errorf("replace credential %s/%s: %w", name, cr.Username, err)
			}
			delete(ip.credIDs, cr.Username)
		}
		for start := 0; start < len(ip.create); start += tenancy.MaxBulkCredentials {
			chunk := ip.create[start:min(start+tenancy.MaxBulkCredentials, len(ip.create))]
			type newCred struct {
				Username        string `json:"username"`
				ClientIDPattern string `json:"client_id_pattern,omitempty"`
				Password        string `json:"password,omitempty"`
			}
			list := make([]newCred, len(chunk))
			for i, cs := range chunk {
				list[i] = newCred{Username: cs.Username, ClientIDPattern: cs.ClientIDPattern, Password: cs.password}
			}
			body, _ := json.Marshal(map[string]any{"credentials": list})
			r, err := c.CreateCredentialsWithBodyWithResponse(ctx, org, id, nil, "application/json", bytes.NewReader(body))
			if err := sdk.Check(r, err); err != nil {
				return secrets, fmt.Errorf("create credentials of %s: %w", name, err)
			}
			var out struct {
				Data []sdk.CredentialWithPassword `json:"data"`
			}
			if err := json.Unmarshal(r.Body, &out); err != nil {
				return secrets, fmt.Errorf("create credentials of %s: %w", name, err)
			}
			for i, cr := range out.Data {
				ip.credIDs[cr.Username] = cr.Id
				if cr.Password != nil && *cr.Password != "" {
					secrets = append(secrets, Secret{Instance: name, InstanceID: id, Username: cr.Username, MQTTUsername: cr.MqttUsername, Password: *cr.Password})
				}
				if e := chunk[i].Enabled; e != nil && !*e {
					ip.enable[cr.Id] = false
				}
			}
			fmt.Fprintf(log, "created %d credentials in %s\n", len(out.Data), name)
		}
		for cid, en := range ip.enable {
			r, err := c.UpdateCredentialWithResponse(ctx, org, id, cid, nil, sdk.UpdateCredentialJSONRequestBody{Enabled: &en})
			if err := sdk.Check(r, err); err != nil {
				return secrets, fmt.Errorf("update credential %s: %w", cid, err)
			}
		}
		if ip.acl {
			type rule struct {
				Effect       string  `json:"effect"`
				Action       string  `json:"action"`
				Filter       string  `json:"filter"`
				CredentialID *string `json:"credential_id,omitempty"`
			}
			rules := make([]rule, len(*ip.spec.ACL))
			for i, r := range *ip.spec.ACL {
				rules[i] = rule{Effect: r.Effect, Action: r.Action, Filter: r.Filter}
				if r.Credential != "" {
					cid := ip.credIDs[r.Credential]
					rules[i].CredentialID = &cid
				}
			}
			body, _ := json.Marshal(map[string]any{"rules": rules})
			r, err := c.ReplaceACLRulesWithBodyWithResponse(ctx, org, id, nil, "application/json", bytes.NewReader(body))
			if err := sdk.Check(r, err); err != nil {
				return secrets, fmt.Errorf("acl rules of %s: %w", name, err)
			}
			fmt.Fprintf(log, "set %d acl rules in %s\n", len(rules), name)
		}
		if ip.quotas != nil {
			q := map[string]int64{}
			if len(ip.curQuotaRaw) > 0 {
				for k, v := range ip.curQuotaRaw {
					q[k] = v
				}
			}
			for k, v := range ip.quotas {
				q[k] = v
			}
			if len(ip.curQuotaRaw) == 0 {
				q = ip.quotas
			}
			body, _ := json.Marshal(q)
			r, err := c.SetQuotasWithBodyWithResponse(ctx, org, id, nil, "application/json", bytes.NewReader(body))
			if err := sdk.Check(r, err); err != nil {
				return secrets, fmt.Errorf("quotas of %s: %w", name, err)
			}
		}
		for _, cr := range ip.prune {
			r, err := c.DeleteCredentialWithResponse(ctx, org, id, cr.Id)
			if err := sdk.Check(r, err); err != nil && !sdk.IsNotFound(err) {
				return secrets, fmt.Errorf("delete credential %s/%s: %w", name, cr.Username, err)
			}
		}
		if len(ip.prune) > 0 {
			fmt.Fprintf(log, "deleted %d credentials from %s\n", len(ip.prune), name)
		}
	}
	for _, in := range p.deletes {
		r, err := c.DeleteInstanceWithResponse(ctx, org, in.Id)
		if err := sdk.Check(r, err); err != nil && !sdk.IsNotFound(err) {
			return secrets, fmt.Errorf("delete instance %s: %w", in.Name, err)
		}
		fmt.Fprintf(log, "deleted instance %s\n", in.Name)
	}
	// New instances: wait until their node runs them, so devices can
	// connect when apply returns.
	deadline := time.Now().Add(30 * time.Second)
	for _, ip := range p.instances {
		for ip.cur != nil && ip.cur.Status == sdk.InstanceStatusProvisioning && time.Now().Before(deadline) {
			r, err := c.GetInstanceWithResponse(ctx, org, ip.cur.Id)
			if err := sdk.Check(r, err); err != nil {
				return secrets, fmt.Errorf("instance %s: %w", ip.spec.Name, err)
			}
			ip.cur = r.JSON200
			if ip.cur.Status == sdk.InstanceStatusProvisioning {
				select {
				case <-ctx.Done():
					return secrets, ctx.Err()
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
	}
	return secrets, nil
}
