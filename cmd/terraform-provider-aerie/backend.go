package main

import (
	"context"
	"errors"
	"time"
)

// errNotFound is what a backend returns when the object does not exist (404):
// the provider turns it into "removed out of band" rather than an error.
var errNotFound = errors.New("not found")

// quotaNames are the instance quota fields, in the order the docs list them.
var quotaNames = []string{
	"max_connections", "max_connects_per_second", "max_publish_per_second",
	"max_publish_per_second_per_client", "max_bytes_per_second", "max_payload_bytes",
	"max_subscriptions_per_client", "max_topic_levels", "max_retained_messages",
	"max_session_expiry_seconds", "max_inflight", "max_backlog_seconds",
}

// Instance is an MQTT instance as the provider sees it.
type Instance struct {
	ID, Name, Plan, Status, NodeID, UsernameFormat string
	AllowAnonymous, DeletionProtection             bool
	Endpoints                                      map[string]*string // mqtt, mqtts, ws, wss
	Quotas                                         map[string]int64   // effective; 0 = unlimited
	CreatedAt                                      time.Time
}

// InstanceChange is a partial update of an instance; nil fields are left alone.
type InstanceChange struct {
	Name                               *string
	AllowAnonymous, DeletionProtection *bool
	Suspended                          *bool
}

// Credential is a device credential (never with its password).
type Credential struct {
	ID, InstanceID, Username, MQTTUsername, ClientIDPattern string
	Enabled                                                 bool
	ExpiresAt                                               *time.Time
}

// NewCredential is a credential to create. An empty Password asks the server
// to generate one.
type NewCredential struct {
	Username, ClientIDPattern, Password string
	ExpiresAt                           *time.Time
}

// ACLRule is one rule of an instance's ordered list; an empty CredentialID
// means every device of the instance.
type ACLRule struct {
	Effect, Action, Filter, CredentialID string
}

// APIKey is an org API key (the secret only on creation).
type APIKey struct {
	ID, Name, Prefix, Secret string
	Scopes                   []string
	ExpiresAt                *time.Time
	CreatedAt                time.Time
}

// Member is a member of the org.
type Member struct {
	UserID, Email, Role string
}

// Plan is one of the service's plans.
type Plan struct {
	ID, Name, Currency string
	BaseCents          int64
	Quotas             map[string]int64
}

// Backend is what the provider needs from the Aerie API. It is backed by the
// Go SDK (sdk/); every method takes the org the provider was configured for.
type Backend interface {
	// OrgID is the org every resource lives in.
	OrgID() string

	CreateInstance(ctx context.Context, name string, allowAnonymous, deletionProtection bool) (Instance, error)
	GetInstance(ctx context.Context, id string) (Instance, error)
	// FindInstance looks an instance up by its (unique) name.
	FindInstance(ctx context.Context, name string) (Instance, error)
	UpdateInstance(ctx context.Context, id string, ch InstanceChange) (Instance, error)
	DeleteInstance(ctx context.Context, id string) error

	// CreateCredential returns the credential and its password (the
	// generated one, or the supplied one echoed back).
	CreateCredential(ctx context.Context, instanceID string, nc NewCredential) (Credential, string, error)
	GetCredential(ctx context.Context, instanceID, id string) (Credential, error)
	// FindCredential looks a credential up by username.
	FindCredential(ctx context.Context, instanceID, username string) (Credential, error)
	SetCredentialEnabled(ctx context.Context, instanceID, id string, enabled bool) (Credential, error)
	// RotateCredential replaces the password: with password, or a generated
	// one when it is empty; it returns the new password.
	RotateCredential(ctx context.Context, instanceID, id, password string) (string, error)
	DeleteCredential(ctx context.Context, instanceID, id string) error

	// ACLRules is the instance's ordered rule list.
	ACLRules(ctx context.Context, instanceID string) ([]ACLRule, error)
	// ReplaceACLRules replaces the whole ordered list in one change.
	ReplaceACLRules(ctx context.Context, instanceID string, rules []ACLRule) ([]ACLRule, error)

	// SetQuotas sets the instance's quota overrides (absent: the plan's
	// value) and returns the effective quotas.
	SetQuotas(ctx context.Context, instanceID string, q map[string]int64) (map[string]int64, error)

	CreateAPIKey(ctx context.Context, name string, scopes []string, expiresAt *time.Time) (APIKey, error)
	GetAPIKey(ctx context.Context, id string) (APIKey, error)
	DeleteAPIKey(ctx context.Context, id string) error

	Members(ctx context.Context) ([]Member, error)
	SetMemberRole(ctx context.Context, userID, role string) (Member, error)
	RemoveMember(ctx context.Context, userID string) error
	Invite(ctx context.Context, email, role string) error

	Plans(ctx context.Context) ([]Plan, error)
}

// FieldError is one invalid field of a request the API refused (400/422).
type FieldError struct{ Field, Message string }

// InvalidError is an API refusal that names the offending fields; backends
// return it so the provider can point at the attribute.
type InvalidError struct {
	Err    error
	Fields []FieldError
}

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }
