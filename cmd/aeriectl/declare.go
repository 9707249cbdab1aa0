package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

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
		validateQuotas(p, in.Quotas, add)
		users := validateCredentials(p, in.Credentials, getenv, add)
		if in.ACL != nil {
			validateACL(p, *in.ACL, users, add)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// addFunc records a problem at a path of the file.
type addFunc func(path, format string, a ...any)

func validateQuotas(p string, quotas map[string]int64, add addFunc) {
	keys := make([]string, 0, len(quotas))
	for k := range quotas {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !quotaKeys[k] {
			add(p+".quotas."+k, "is not a quota")
		} else if quotas[k] < 0 {
			add(p+".quotas."+k, "must be 0 or more")
		}
	}
}

// validateCredentials checks an instance's credentials, reads their
// supplied passwords, and returns the usernames seen.
func validateCredentials(p string, creds []CredentialSpec, getenv func(string) string, add addFunc) map[string]bool {
	users := map[string]bool{}
	for j := range creds {
		c := &creds[j]
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
	return users
}

// validateACL checks an instance's rules; users are its credentials.
func validateACL(p string, acl []RuleSpec, users map[string]bool, add addFunc) {
	if len(acl) > tenancy.MaxACLRules {
		add(p+".acl", "at most %d rules", tenancy.MaxACLRules)
	}
	for j, r := range acl {
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
