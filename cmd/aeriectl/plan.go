package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/aeriemq/aerie/sdk"
)

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
		planInstanceUpdate(p, ip)
		var err error
		if curCreds, err = sdk.Collect(ctx, c.CredentialsPages(org, ip.cur.Id)); err != nil {
			return fmt.Errorf("instance %s: list credentials: %w", name, err)
		}
		if spec.ACL != nil {
			if curRules, err = currentRules(ctx, c, org, ip.cur.Id, curCreds); err != nil {
				return fmt.Errorf("instance %s: list acl rules: %w", name, err)
			}
		}
	}
	want := planCredentials(p, ip, curCreds)
	if spec.ACL != nil {
		planACL(p, ip, curRules)
	}
	if len(spec.Quotas) > 0 {
		if err := planQuotas(ctx, c, org, p, ip); err != nil {
			return err
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

// planInstanceUpdate compares an existing instance's settings with the file.
func planInstanceUpdate(p *Plan, ip *instancePlan) {
	spec, in := ip.spec, ip.cur
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
		p.add('~', "instance "+spec.Name, strings.Join(diffs, ", "))
	}
}

// currentRules lists an instance's ACL rules as the file would write them
// (credentials by username).
func currentRules(ctx context.Context, c *sdk.API, org, instanceID string, curCreds []sdk.Credential) ([]RuleSpec, error) {
	rules, err := sdk.Collect(ctx, c.ACLRulesPages(org, instanceID))
	if err != nil {
		return nil, err
	}
	byID := map[string]string{}
	for _, cr := range curCreds {
		byID[cr.Id] = cr.Username
	}
	curRules := make([]RuleSpec, len(rules))
	for i, r := range rules {
		curRules[i] = RuleSpec{Effect: string(r.Effect), Action: string(r.Action), Filter: r.Filter}
		if r.CredentialId != nil {
			curRules[i].Credential = byID[*r.CredentialId]
			if curRules[i].Credential == "" {
				curRules[i].Credential = *r.CredentialId
			}
		}
	}
	return curRules, nil
}

// planCredentials compares the file's credentials with the instance's and
// returns the usernames the file lists.
func planCredentials(p *Plan, ip *instancePlan, curCreds []sdk.Credential) map[string]bool {
	name := ip.spec.Name
	have := map[string]sdk.Credential{}
	for _, cr := range curCreds {
		have[cr.Username] = cr
		ip.credIDs[cr.Username] = cr.Id
	}
	want := map[string]bool{}
	for _, cs := range ip.spec.Credentials {
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
	return want
}

// planACL compares the file's rule list with the instance's, rule by rule.
func planACL(p *Plan, ip *instancePlan, curRules []RuleSpec) {
	des := *ip.spec.ACL
	for i := 0; i < len(des) || i < len(curRules); i++ {
		what := fmt.Sprintf("acl %s[%d]", ip.spec.Name, i)
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

// planQuotas compares the file's quotas with the instance's.
func planQuotas(ctx context.Context, c *sdk.API, org string, p *Plan, ip *instancePlan) error {
	spec, name := ip.spec, ip.spec.Name
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
