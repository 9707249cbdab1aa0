package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aeriemq/aerie/sdk"
)

// sdkBackend is the Backend on the Go SDK.
type sdkBackend struct {
	c   *sdk.API
	org string
}

// connectSDK builds the Backend on the Go SDK: an API-key client that asks
// every change to answer once the data plane applied it, and the org (the
// configured one, else the key's own).
func connectSDK(ctx context.Context, cfg providerConfig) (Backend, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64 // terraform -parallelism runs many calls at once
	c, err := sdk.New(ctx, sdk.Options{
		BaseURL:    cfg.URL,
		APIKey:     cfg.APIKey,
		HTTPClient: &http.Client{Timeout: 60 * time.Second, Transport: tr},
		Wait:       10 * time.Second,
		UserAgent:  cfg.UserAgent,
	})
	if err != nil {
		return nil, err
	}
	b := &sdkBackend{c: c, org: cfg.OrgID}
	if b.org == "" {
		r, err := c.ListOrgsWithResponse(ctx, nil)
		if err := sdk.Check(r, err); err != nil {
			return nil, fmt.Errorf("find the API key's org: %w", err)
		}
		if len(r.JSON200.Data) != 1 {
			return nil, fmt.Errorf("the credentials see %d orgs; set org_id (or AERIE_ORG_ID)", len(r.JSON200.Data))
		}
		b.org = r.JSON200.Data[0].Id
	}
	return b, nil
}

// check is sdk.Check with 404 as errNotFound and field errors as
// *InvalidError.
func check(resp interface{ StatusCode() int }, err error) error {
	err = sdk.Check(resp, err)
	if err == nil {
		return nil
	}
	var e *sdk.Error
	if errors.As(err, &e) {
		if e.Status == http.StatusNotFound {
			return fmt.Errorf("%w: %w", errNotFound, err)
		}
		if len(e.Fields) > 0 {
			ie := &InvalidError{Err: err}
			for _, f := range e.Fields {
				ie.Fields = append(ie.Fields, FieldError{Field: f.Field, Message: f.Message})
			}
			return ie
		}
	}
	return err
}

func (b *sdkBackend) OrgID() string { return b.org }

func quotasFrom(q sdk.Quotas) map[string]int64 {
	m := map[string]int64{}
	raw, _ := json.Marshal(q)
	_ = json.Unmarshal(raw, &m)
	return m
}

func quotasTo(m map[string]int64) sdk.Quotas {
	var q sdk.Quotas
	raw, _ := json.Marshal(m)
	_ = json.Unmarshal(raw, &q)
	return q
}

func instanceFrom(in sdk.Instance) Instance {
	return Instance{
		ID: in.Id, Name: in.Name, Plan: in.Plan, Status: string(in.Status), NodeID: in.NodeId, UsernameFormat: in.UsernameFormat,
		AllowAnonymous: in.AllowAnonymous, DeletionProtection: in.DeletionProtection,
		Endpoints: map[string]*string{"mqtt": in.Endpoints.Mqtt, "mqtts": in.Endpoints.Mqtts, "ws": in.Endpoints.Ws, "wss": in.Endpoints.Wss},
		Quotas:    quotasFrom(in.Quotas), CreatedAt: in.CreatedAt,
	}
}

func (b *sdkBackend) CreateInstance(ctx context.Context, name string, allowAnonymous, deletionProtection bool) (Instance, error) {
	r, err := b.c.CreateInstanceWithResponse(ctx, b.org, nil, sdk.CreateInstanceJSONRequestBody{
		Name: name, AllowAnonymous: &allowAnonymous, DeletionProtection: &deletionProtection})
	if err := check(r, err); err != nil {
		return Instance{}, err
	}
	return instanceFrom(*r.JSON201), nil
}

func (b *sdkBackend) GetInstance(ctx context.Context, id string) (Instance, error) {
	r, err := b.c.GetInstanceWithResponse(ctx, b.org, id)
	if err := check(r, err); err != nil {
		return Instance{}, err
	}
	return instanceFrom(*r.JSON200), nil
}

func (b *sdkBackend) FindInstance(ctx context.Context, name string) (Instance, error) {
	r, err := b.c.ListInstancesWithResponse(ctx, b.org, &sdk.ListInstancesParams{Name: &name})
	if err := check(r, err); err != nil {
		return Instance{}, err
	}
	if len(r.JSON200.Data) == 0 {
		return Instance{}, fmt.Errorf("%w: no instance named %q", errNotFound, name)
	}
	return instanceFrom(r.JSON200.Data[0]), nil
}

func (b *sdkBackend) UpdateInstance(ctx context.Context, id string, ch InstanceChange) (Instance, error) {
	body := sdk.UpdateInstanceJSONRequestBody{Name: ch.Name, AllowAnonymous: ch.AllowAnonymous, DeletionProtection: ch.DeletionProtection}
	if ch.Suspended != nil {
		s := sdk.UpdateInstanceJSONBodyStatus("running")
		if *ch.Suspended {
			s = "suspended"
		}
		body.Status = &s
	}
	r, err := b.c.UpdateInstanceWithResponse(ctx, b.org, id, nil, body)
	if err := check(r, err); err != nil {
		return Instance{}, err
	}
	return instanceFrom(*r.JSON200), nil
}

func (b *sdkBackend) DeleteInstance(ctx context.Context, id string) error {
	r, err := b.c.DeleteInstanceWithResponse(ctx, b.org, id, nil)
	return check(r, err)
}

func credentialFrom(c sdk.Credential) Credential {
	return Credential{ID: c.Id, InstanceID: c.InstanceId, Username: c.Username, MQTTUsername: c.MqttUsername,
		ClientIDPattern: c.ClientIdPattern, Enabled: c.Enabled, ExpiresAt: c.ExpiresAt}
}

func (b *sdkBackend) CreateCredential(ctx context.Context, instanceID string, nc NewCredential) (Credential, string, error) {
	in := sdk.NewCredential{Username: nc.Username, ExpiresAt: nc.ExpiresAt}
	if nc.Password != "" {
		in.Password = &nc.Password
	}
	if nc.ClientIDPattern != "" {
		in.ClientIdPattern = &nc.ClientIDPattern
	}
	// The generated CreateCredentialsJSONRequestBody (a oneOf) loses its
	// MarshalJSON, so the single-credential body is sent as raw JSON.
	raw, err := json.Marshal(in)
	if err != nil {
		return Credential{}, "", err
	}
	r, err := b.c.CreateCredentialsWithBodyWithResponse(ctx, b.org, instanceID, nil, "application/json", bytes.NewReader(raw))
	if err := check(r, err); err != nil {
		return Credential{}, "", err
	}
	cp, err := r.JSON201.AsCredentialWithPassword()
	if err != nil {
		return Credential{}, "", fmt.Errorf("decode credential: %w", err)
	}
	return Credential{ID: cp.Id, InstanceID: cp.InstanceId, Username: cp.Username, MQTTUsername: cp.MqttUsername,
		ClientIDPattern: cp.ClientIdPattern, Enabled: cp.Enabled, ExpiresAt: cp.ExpiresAt}, deref(cp.Password), nil
}

func (b *sdkBackend) GetCredential(ctx context.Context, instanceID, id string) (Credential, error) {
	r, err := b.c.GetCredentialWithResponse(ctx, b.org, instanceID, id)
	if err := check(r, err); err != nil {
		return Credential{}, err
	}
	return credentialFrom(*r.JSON200), nil
}

func (b *sdkBackend) FindCredential(ctx context.Context, instanceID, username string) (Credential, error) {
	r, err := b.c.ListCredentialsWithResponse(ctx, b.org, instanceID, &sdk.ListCredentialsParams{Name: &username})
	if err := check(r, err); err != nil {
		return Credential{}, err
	}
	if len(r.JSON200.Data) == 0 {
		return Credential{}, fmt.Errorf("%w: no credential %q in %s", errNotFound, username, instanceID)
	}
	return credentialFrom(r.JSON200.Data[0]), nil
}

func (b *sdkBackend) SetCredentialEnabled(ctx context.Context, instanceID, id string, enabled bool) (Credential, error) {
	r, err := b.c.UpdateCredentialWithResponse(ctx, b.org, instanceID, id, nil, sdk.UpdateCredentialJSONRequestBody{Enabled: &enabled})
	if err := check(r, err); err != nil {
		return Credential{}, err
	}
	return credentialFrom(*r.JSON200), nil
}

func (b *sdkBackend) RotateCredential(ctx context.Context, instanceID, id, password string) (string, error) {
	body := sdk.RotateCredentialJSONRequestBody{}
	if password != "" {
		body.Password = &password
	}
	r, err := b.c.RotateCredentialWithResponse(ctx, b.org, instanceID, id, nil, body)
	if err := check(r, err); err != nil {
		return "", err
	}
	return deref(r.JSON200.Password), nil
}

func (b *sdkBackend) DeleteCredential(ctx context.Context, instanceID, id string) error {
	r, err := b.c.DeleteCredentialWithResponse(ctx, b.org, instanceID, id, nil)
	return check(r, err)
}

func (b *sdkBackend) listRules(ctx context.Context, instanceID string) ([]sdk.ACLRule, error) {
	rs, err := sdk.Collect(ctx, b.c.ACLRulesPages(b.org, instanceID))
	if err != nil {
		return nil, check(nil, err)
	}
	return rs, nil
}

func rulesFrom(rs []sdk.ACLRule) []ACLRule {
	out := make([]ACLRule, 0, len(rs))
	for _, r := range rs {
		x := ACLRule{Effect: string(r.Effect), Action: string(r.Action), Filter: r.Filter}
		if r.CredentialId != nil {
			x.CredentialID = *r.CredentialId
		}
		out = append(out, x)
	}
	return out
}

func (b *sdkBackend) ACLRules(ctx context.Context, instanceID string) ([]ACLRule, error) {
	rs, err := b.listRules(ctx, instanceID)
	if err != nil {
		return nil, err
	}
	return rulesFrom(rs), nil
}

// ReplaceACLRules replaces the whole ordered list in one PUT (one
// transaction, one config revision).
func (b *sdkBackend) ReplaceACLRules(ctx context.Context, instanceID string, rules []ACLRule) ([]ACLRule, error) {
	var body sdk.ReplaceACLRulesJSONRequestBody
	body.Rules = make([]struct {
		Action       sdk.ReplaceACLRulesJSONBodyRulesAction `json:"action"`
		CredentialId *string                                `json:"credential_id,omitempty"`
		Effect       sdk.ReplaceACLRulesJSONBodyRulesEffect `json:"effect"`
		Filter       string                                 `json:"filter"`
	}, len(rules))
	for i, r := range rules {
		x := &body.Rules[i]
		x.Action, x.Effect, x.Filter = sdk.ReplaceACLRulesJSONBodyRulesAction(r.Action), sdk.ReplaceACLRulesJSONBodyRulesEffect(r.Effect), r.Filter
		if r.CredentialID != "" {
			x.CredentialId = &rules[i].CredentialID
		}
	}
	r, err := b.c.ReplaceACLRulesWithResponse(ctx, b.org, instanceID, nil, body)
	if err := check(r, err); err != nil {
		return nil, err
	}
	return rulesFrom(r.JSON200.Data), nil
}

func (b *sdkBackend) SetQuotas(ctx context.Context, instanceID string, q map[string]int64) (map[string]int64, error) {
	r, err := b.c.SetQuotasWithResponse(ctx, b.org, instanceID, nil, quotasTo(q))
	if err := check(r, err); err != nil {
		return nil, err
	}
	return quotasFrom(*r.JSON200), nil
}

func apiKeyFrom(id, name, prefix string, scopes []sdk.Scope, exp *time.Time, created time.Time) APIKey {
	k := APIKey{ID: id, Name: name, Prefix: prefix, ExpiresAt: exp, CreatedAt: created}
	for _, s := range scopes {
		k.Scopes = append(k.Scopes, string(s))
	}
	return k
}

func (b *sdkBackend) CreateAPIKey(ctx context.Context, name string, scopes []string, expiresAt *time.Time) (APIKey, error) {
	body := sdk.CreateAPIKeyJSONRequestBody{Name: name, ExpiresAt: expiresAt}
	for _, s := range scopes {
		body.Scopes = append(body.Scopes, sdk.Scope(s))
	}
	r, err := b.c.CreateAPIKeyWithResponse(ctx, b.org, nil, body)
	if err := check(r, err); err != nil {
		return APIKey{}, err
	}
	k := r.JSON201
	out := apiKeyFrom(k.Id, k.Name, k.Prefix, k.Scopes, k.ExpiresAt, k.CreatedAt)
	out.Secret = k.Secret
	return out, nil
}

func (b *sdkBackend) GetAPIKey(ctx context.Context, id string) (APIKey, error) {
	r, err := b.c.GetAPIKeyWithResponse(ctx, b.org, id)
	if err := check(r, err); err != nil {
		return APIKey{}, err
	}
	k := r.JSON200
	return apiKeyFrom(k.Id, k.Name, k.Prefix, k.Scopes, k.ExpiresAt, k.CreatedAt), nil
}

func (b *sdkBackend) DeleteAPIKey(ctx context.Context, id string) error {
	r, err := b.c.RevokeAPIKeyWithResponse(ctx, b.org, id)
	return check(r, err)
}

func (b *sdkBackend) Members(ctx context.Context) ([]Member, error) {
	ms, err := sdk.Collect(ctx, b.c.MembersPages(b.org))
	if err != nil {
		return nil, check(nil, err)
	}
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, Member{UserID: m.UserId, Email: m.Email, Role: string(m.Role)})
	}
	return out, nil
}

func (b *sdkBackend) SetMemberRole(ctx context.Context, userID, role string) (Member, error) {
	r, err := b.c.UpdateMemberWithResponse(ctx, b.org, userID, nil, sdk.UpdateMemberJSONRequestBody{Role: sdk.Role(role)})
	if err := check(r, err); err != nil {
		return Member{}, err
	}
	return Member{UserID: r.JSON200.UserId, Email: r.JSON200.Email, Role: string(r.JSON200.Role)}, nil
}

func (b *sdkBackend) RemoveMember(ctx context.Context, userID string) error {
	r, err := b.c.RemoveMemberWithResponse(ctx, b.org, userID)
	return check(r, err)
}

func (b *sdkBackend) Invite(ctx context.Context, email, role string) error {
	r, err := b.c.InviteMemberWithResponse(ctx, b.org, nil, sdk.InviteMemberJSONRequestBody{Email: email, Role: sdk.Role(role)})
	return check(r, err)
}

func (b *sdkBackend) Plans(ctx context.Context) ([]Plan, error) {
	r, err := b.c.ListPlansWithResponse(ctx)
	if err := check(r, err); err != nil {
		return nil, err
	}
	out := make([]Plan, 0, len(r.JSON200.Data))
	for _, p := range r.JSON200.Data {
		out = append(out, Plan{ID: p.Id, Name: p.Name, Currency: p.Currency, BaseCents: int64(p.BaseCents), Quotas: quotasFrom(p.Quotas)})
	}
	return out, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
