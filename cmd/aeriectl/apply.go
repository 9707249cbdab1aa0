package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/aeriemq/aerie/sdk"
	"github.com/aeriemq/aerie/tenancy"
)

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
		s, err := applyInstance(ctx, c, org, ip, log)
		secrets = append(secrets, s...)
		if err != nil {
			return secrets, err
		}
	}
	for _, in := range p.deletes {
		r, err := c.DeleteInstanceWithResponse(ctx, org, in.Id, nil)
		if err := sdk.Check(r, err); err != nil && !sdk.IsNotFound(err) {
			return secrets, fmt.Errorf("delete instance %s: %w", in.Name, err)
		}
		fmt.Fprintf(log, "deleted instance %s\n", in.Name)
	}
	return secrets, waitRunning(ctx, c, org, p)
}

// applyInstance makes one instance's changes and returns the passwords it
// generated (also on error: they were created).
func applyInstance(ctx context.Context, c *sdk.API, org string, ip *instancePlan, log io.Writer) ([]Secret, error) {
	name := ip.spec.Name
	if ip.cur == nil {
		body := sdk.CreateInstanceJSONRequestBody{Name: name, AllowAnonymous: ip.spec.AllowAnonymous, DeletionProtection: ip.spec.DeletionProtection}
		r, err := c.CreateInstanceWithResponse(ctx, org, nil, body)
		if err := sdk.Check(r, err); err != nil {
			return nil, fmt.Errorf("create instance %s: %w", name, err)
		}
		ip.cur = r.JSON201
		fmt.Fprintf(log, "created instance %s (%s)\n", name, ip.cur.Id)
	} else if ip.update != nil {
		r, err := c.UpdateInstanceWithResponse(ctx, org, ip.cur.Id, nil, *ip.update)
		if err := sdk.Check(r, err); err != nil {
			return nil, fmt.Errorf("update instance %s: %w", name, err)
		}
	}
	id := ip.cur.Id
	for _, cr := range ip.replace {
		r, err := c.DeleteCredentialWithResponse(ctx, org, id, cr.Id, nil)
		if err := sdk.Check(r, err); err != nil && !sdk.IsNotFound(err) {
			return nil, fmt.Errorf("replace credential %s/%s: %w", name, cr.Username, err)
		}
		delete(ip.credIDs, cr.Username)
	}
	var secrets []Secret
	for start := 0; start < len(ip.create); start += tenancy.MaxBulkCredentials {
		chunk := ip.create[start:min(start+tenancy.MaxBulkCredentials, len(ip.create))]
		s, err := createCredentials(ctx, c, org, ip, chunk, log)
		secrets = append(secrets, s...)
		if err != nil {
			return secrets, err
		}
	}
	for cid, en := range ip.enable {
		r, err := c.UpdateCredentialWithResponse(ctx, org, id, cid, nil, sdk.UpdateCredentialJSONRequestBody{Enabled: &en})
		if err := sdk.Check(r, err); err != nil {
			return secrets, fmt.Errorf("update credential %s: %w", cid, err)
		}
	}
	if ip.acl {
		if err := replaceACL(ctx, c, org, ip, log); err != nil {
			return secrets, err
		}
	}
	if ip.quotas != nil {
		if err := setQuotas(ctx, c, org, ip); err != nil {
			return secrets, err
		}
	}
	for _, cr := range ip.prune {
		r, err := c.DeleteCredentialWithResponse(ctx, org, id, cr.Id, nil)
		if err := sdk.Check(r, err); err != nil && !sdk.IsNotFound(err) {
			return secrets, fmt.Errorf("delete credential %s/%s: %w", name, cr.Username, err)
		}
	}
	if len(ip.prune) > 0 {
		fmt.Fprintf(log, "deleted %d credentials from %s\n", len(ip.prune), name)
	}
	return secrets, nil
}

// createCredentials creates one bulk request's worth of credentials and
// returns their generated passwords.
func createCredentials(ctx context.Context, c *sdk.API, org string, ip *instancePlan, chunk []CredentialSpec, log io.Writer) ([]Secret, error) {
	name, id := ip.spec.Name, ip.cur.Id
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
		return nil, fmt.Errorf("create credentials of %s: %w", name, err)
	}
	var out struct {
		Data []sdk.CredentialWithPassword `json:"data"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		return nil, fmt.Errorf("create credentials of %s: %w", name, err)
	}
	var secrets []Secret
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
	return secrets, nil
}

// replaceACL puts the file's whole rule list (credentials by ID).
func replaceACL(ctx context.Context, c *sdk.API, org string, ip *instancePlan, log io.Writer) error {
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
	r, err := c.ReplaceACLRulesWithBodyWithResponse(ctx, org, ip.cur.Id, nil, "application/json", bytes.NewReader(body))
	if err := sdk.Check(r, err); err != nil {
		return fmt.Errorf("acl rules of %s: %w", ip.spec.Name, err)
	}
	fmt.Fprintf(log, "set %d acl rules in %s\n", len(rules), ip.spec.Name)
	return nil
}

// setQuotas puts the instance's quotas with the file's values over the
// current ones.
func setQuotas(ctx context.Context, c *sdk.API, org string, ip *instancePlan) error {
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
	r, err := c.SetQuotasWithBodyWithResponse(ctx, org, ip.cur.Id, nil, "application/json", bytes.NewReader(body))
	if err := sdk.Check(r, err); err != nil {
		return fmt.Errorf("quotas of %s: %w", ip.spec.Name, err)
	}
	return nil
}

// waitRunning waits (up to 30 s) until the new instances' nodes run them,
// so devices can connect when apply returns.
func waitRunning(ctx context.Context, c *sdk.API, org string, p *Plan) error {
	deadline := time.Now().Add(30 * time.Second)
	for _, ip := range p.instances {
		for ip.cur != nil && ip.cur.Status == sdk.InstanceStatusProvisioning && time.Now().Before(deadline) {
			r, err := c.GetInstanceWithResponse(ctx, org, ip.cur.Id)
			if err := sdk.Check(r, err); err != nil {
				return fmt.Errorf("instance %s: %w", ip.spec.Name, err)
			}
			ip.cur = r.JSON200
			if ip.cur.Status == sdk.InstanceStatusProvisioning {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
	}
	return nil
}
