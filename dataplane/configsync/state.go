// Package configsync is the data plane's copy of its configuration: an
// in-memory State built from the control plane's snapshot and deltas (see
// dataplane/config for the protocol), kept on disk so a node starts and
// serves with the control plane down, and a watch client that follows the
// control plane and resumes from the last applied revision.
package configsync

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/aeriemq/aerie/dataplane/config"
)

// Change describes what an applied event changed, for listeners that must
// act on it (the gateway closes connections a change revokes).
type Change struct {
	Revision   int64
	Kind       string
	InstanceID string
	// CredentialID is set for credential changes; Username is the
	// credential's username before the change.
	CredentialID string
	Username     string
	// Revoked is true when live connections under the instance (or the
	// credential, or the token JTI) must be closed.
	Revoked bool
	JTI     string
}

// cred is one device credential, compact: a node may hold millions.
type cred struct {
	id   string
	hash [32]byte // SHA-256 of the generated secret, or of phc
	// phc is the bcrypt hash of a tenant-supplied password; nil for a
	// generated secret (checked against hash).
	phc     *string
	pattern *string // client-ID pattern; nil for none (most credentials)
	expires uint32  // unix seconds (clamped to 1…2^32-1); 0 never
	enabled bool
}

type instance struct {
	meta     config.Instance   // ID, OrgID, Status, AllowAnonymous, Quotas; no children
	creds    map[string]cred   // by username
	credByID map[string]string // id → username
	acl      []config.ACLRule
	keys     map[string]config.TokenKey
	revoked  map[string]time.Time // jti → expiry
	topics   []config.Topic       // provisioned topics (replaced, never modified in place)
}

func newInstance(meta config.Instance) *instance {
	meta.Credentials, meta.ACL, meta.TokenKeys, meta.RevokedTokens, meta.Topics = nil, nil, nil, nil, nil
	return &instance{meta: meta, creds: map[string]cred{}, credByID: map[string]string{},
		keys: map[string]config.TokenKey{}, revoked: map[string]time.Time{}}
}

// State is the configuration a node enforces. It is safe for concurrent
// use; lookups take a read lock only.
type State struct {
	mu        sync.RWMutex
	rev       int64
	nodeID    string
	instances map[string]*instance
	lmu       sync.Mutex
	listeners []func(Change)
	// verified caches, per credential ID, SHA-256(bcrypt hash, NUL,
	// password) of the last tenant-supplied password bcrypt accepted, so a
	// device reconnecting pays bcrypt once per node run (memory only; a new
	// hash — rotation — misses the cache).
	verified sync.Map
}

// NewState returns an empty state at revision 0.
func NewState() *State { return &State{instances: map[string]*instance{}} }

// Revision is the last applied revision.
func (s *State) Revision() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// OnChange registers fn to be called (outside the state's lock) after each
// applied event.
func (s *State) OnChange(fn func(Change)) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	s.listeners = append(s.listeners, fn)
}

func (s *State) notify(chs []Change) {
	s.lmu.Lock()
	ls := append([]func(Change){}, s.listeners...)
	s.lmu.Unlock()
	for _, c := range chs {
		for _, fn := range ls {
			fn(c)
		}
	}
}

// ErrBadEvent is returned for an event that cannot be applied; the state is
// unchanged.
var ErrBadEvent = errors.New("bad config event")

// Apply applies one event atomically: either all of it or, on error, none.
// Events at or below the current revision are ignored (a replay after a
// reconnect), except a snapshot, which always replaces everything.
func (s *State) Apply(ev config.Event) error {
	chs, err := s.apply(ev)
	if err != nil {
		return err
	}
	s.notify(chs)
	return nil
}

func (s *State) apply(ev config.Event) ([]Change, error) {
	if ev.Kind == config.KindSnapshot {
		if ev.Snapshot == nil {
			return nil, fmt.Errorf("%w: snapshot without body", ErrBadEvent)
		}
		next, err := buildInstances(ev.Snapshot.Instances)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		old := s.instances
		s.instances, s.nodeID = next, ev.Snapshot.NodeID
		s.rev = max(ev.Revision, ev.Snapshot.Revision)
		s.mu.Unlock()
		// Instances gone from the snapshot revoke their connections; so do
		// credentials that disappeared or changed.
		var chs []Change
		for id, oi := range old {
			ni, ok := next[id]
			if !ok || !usable(ni.meta.Status) {
				chs = append(chs, Change{Revision: s.rev, Kind: config.KindInstanceDelete, InstanceID: id, Revoked: true})
				continue
			}
			for user, oc := range oi.creds {
				if nc, ok := ni.creds[user]; !ok || nc.hash != oc.hash || !nc.enabled {
					chs = append(chs, Change{Revision: s.rev, Kind: config.KindCredentialDel, InstanceID: id, CredentialID: oc.id, Username: user, Revoked: true})
				}
			}
		}
		return append(chs, Change{Revision: s.rev, Kind: config.KindSnapshot}), nil
	}
	if ev.Kind == config.KindHeartbeat {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ev.Revision <= s.rev {
		return nil, nil
	}
	ch := Change{Revision: ev.Revision, Kind: ev.Kind, InstanceID: ev.InstanceID}
	inst := s.instances[ev.InstanceID]
	needInst := func() error {
		if inst == nil {
			return fmt.Errorf("%w: %s for unknown instance %q", ErrBadEvent, ev.Kind, ev.InstanceID)
		}
		return nil
	}
	switch ev.Kind {
	case config.KindInstancePut:
		if ev.Instance == nil || ev.Instance.ID == "" {
			return nil, fmt.Errorf("%w: instance.put without instance", ErrBadEvent)
		}
		built, err := buildInstances([]config.Instance{*ev.Instance})
		if err != nil {
			return nil, err
		}
		ch.InstanceID = ev.Instance.ID
		ch.Revoked = inst != nil // a replaced instance: re-authenticate everyone
		s.instances[ev.Instance.ID] = built[ev.Instance.ID]
	case config.KindInstanceStatus:
		if ev.Instance == nil {
			return nil, fmt.Errorf("%w: instance.status without instance", ErrBadEvent)
		}
		if inst = s.instances[ev.Instance.ID]; inst == nil {
			return nil, fmt.Errorf("%w: status of unknown instance %q", ErrBadEvent, ev.Instance.ID)
		}
		ch.InstanceID = ev.Instance.ID
		inst.meta.Status, inst.meta.AllowAnonymous, inst.meta.Limited = ev.Instance.Status, ev.Instance.AllowAnonymous, ev.Instance.Limited
		ch.Revoked = !usable(inst.meta.Status) || inst.meta.Limited == config.LimitSuspend
	case config.KindInstanceDelete:
		delete(s.instances, ev.InstanceID)
		ch.Revoked = true
	case config.KindCredentialPut:
		if err := needInst(); err != nil {
			return nil, err
		}
		if ev.Credential == nil {
			return nil, fmt.Errorf("%w: credential.put without credential", ErrBadEvent)
		}
		c, err := toCred(*ev.Credential)
		if err != nil {
			return nil, err
		}
		if oldUser, ok := inst.credByID[c.id]; ok {
			old := inst.creds[oldUser]
			ch.Username = oldUser
			// Rotating, disabling or renaming revokes live connections. A new
			// expiry does not: the gateway re-arms the connections' expiry
			// timers with it (a past one closes them at once).
			ch.Revoked = old.hash != c.hash || !c.enabled || oldUser != ev.Credential.Username
			delete(inst.creds, oldUser)
		} else if other, ok := inst.creds[ev.Credential.Username]; ok && other.id != c.id {
			return nil, fmt.Errorf("%w: username %q already used by %s", ErrBadEvent, ev.Credential.Username, other.id)
		}
		ch.CredentialID = c.id
		inst.creds[ev.Credential.Username] = c
		inst.credByID[c.id] = ev.Credential.Username
	case config.KindCredentialDel:
		if err := needInst(); err != nil {
			return nil, err
		}
		ch.CredentialID = ev.ID
		if user, ok := inst.credByID[ev.ID]; ok {
			ch.Username = user
			delete(inst.creds, user)
			delete(inst.credByID, ev.ID)
		}
		ch.Revoked = true
	case config.KindACLPut:
		if err := needInst(); err != nil {
			return nil, err
		}
		if ev.ACLRule == nil {
			return nil, fmt.Errorf("%w: acl.put without rule", ErrBadEvent)
		}
		if err := validateRule(*ev.ACLRule); err != nil {
			return nil, err
		}
		acl := make([]config.ACLRule, 0, len(inst.acl)+1)
		for _, r := range inst.acl {
			if r.ID != ev.ACLRule.ID {
				acl = append(acl, r)
			}
		}
		inst.acl = append(acl, *ev.ACLRule)
	case config.KindACLReplace:
		if err := needInst(); err != nil {
			return nil, err
		}
		for _, r := range ev.ACL {
			if err := validateRule(r); err != nil {
				return nil, err
			}
		}
		inst.acl = append([]config.ACLRule(nil), ev.ACL...)
	case config.KindACLDelete:
		if err := needInst(); err != nil {
			return nil, err
		}
		acl := make([]config.ACLRule, 0, len(inst.acl))
		for _, r := range inst.acl {
			if r.ID != ev.ID {
				acl = append(acl, r)
			}
		}
		inst.acl = acl
	case config.KindQuotasPut:
		if err := needInst(); err != nil {
			return nil, err
		}
		if ev.Quotas == nil {
			return nil, fmt.Errorf("%w: quotas.put without quotas", ErrBadEvent)
		}
		inst.meta.Quotas = *ev.Quotas
	case config.KindTokenKeyPut:
		if err := needInst(); err != nil {
			return nil, err
		}
		if ev.TokenKey == nil || len(ev.TokenKey.PublicKey) != ed25519.PublicKeySize || ev.TokenKey.KID == "" {
			return nil, fmt.Errorf("%w: tokenkey.put needs a kid and a %d-byte Ed25519 key", ErrBadEvent, ed25519.PublicKeySize)
		}
		inst.keys[ev.TokenKey.KID] = *ev.TokenKey
	case config.KindTokenRevoke:
		if err := needInst(); err != nil {
			return nil, err
		}
		if ev.RevokedToken == nil || ev.RevokedToken.JTI == "" {
			return nil, fmt.Errorf("%w: token.revoke without jti", ErrBadEvent)
		}
		inst.revoked[ev.RevokedToken.JTI] = ev.RevokedToken.ExpiresAt
		ch.JTI, ch.Revoked = ev.RevokedToken.JTI, true
	case config.KindTopicPut:
		if err := needInst(); err != nil {
			return nil, err
		}
		if ev.Topic == nil || ev.Topic.ID == "" || ev.Topic.Filter == "" {
			return nil, fmt.Errorf("%w: topic.put needs a topic with an id and a filter", ErrBadEvent)
		}
		ts := make([]config.Topic, 0, len(inst.topics)+1)
		for _, t := range inst.topics {
			if t.ID != ev.Topic.ID {
				ts = append(ts, t)
			}
		}
		inst.topics = append(ts, *ev.Topic)
	case config.KindTopicDelete:
		if err := needInst(); err != nil {
			return nil, err
		}
		ts := make([]config.Topic, 0, len(inst.topics))
		for _, t := range inst.topics {
			if t.ID != ev.ID {
				ts = append(ts, t)
			}
		}
		inst.topics = ts
	case config.KindStrictTopics:
		if err := needInst(); err != nil {
			return nil, err
		}
		if ev.Strict == nil {
			return nil, fmt.Errorf("%w: topics.strict without strict", ErrBadEvent)
		}
		inst.meta.StrictTopics = *ev.Strict
	case config.KindRulePut, config.KindRuleDelete:
		if err := needInst(); err != nil {
			return nil, err
		}
		if err := applyRule(&inst.meta, ev); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: unknown kind %q", ErrBadEvent, ev.Kind)
	}
	s.rev = ev.Revision
	return []Change{ch}, nil
}

func usable(status string) bool {
	return status == config.StatusRunning || status == config.StatusProvisioning
}

// The layout of cred keeps it at 64 bytes: a node holds millions.
func (c cred) clientIDPattern() string {
	if c.pattern == nil {
		return ""
	}
	return *c.pattern
}

func patternPtr(p string) *string {
	if p == "" {
		return nil
	}
	return &p
}

// expiryOf clamps a unix time into cred.expires (0 stays "never").
func expiryOf(unix int64) uint32 {
	switch {
	case unix <= 0:
		return 1 // before 1970: long expired
	case unix > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(unix)
}

func toCred(c config.Credential) (cred, error) {
	if c.ID == "" || c.Username == "" || (c.PasswordHash == "") == (len(c.SecretSHA256) != sha256.Size) ||
		(c.PasswordHash != "" && !strings.HasPrefix(c.PasswordHash, "$2")) {
		return cred{}, fmt.Errorf("%w: credential needs an id, a username and either a 32-byte secret hash or a bcrypt password hash", ErrBadEvent)
	}
	out := cred{id: c.ID, pattern: patternPtr(c.ClientIDPattern), enabled: c.Enabled}
	if c.PasswordHash != "" {
		phc := c.PasswordHash
		out.phc, out.hash = &phc, sha256.Sum256([]byte(phc))
	} else {
		copy(out.hash[:], c.SecretSHA256)
	}
	if c.ExpiresAt != nil {
		out.expires = expiryOf(c.ExpiresAt.Unix())
	}
	return out, nil
}

func validateRule(r config.ACLRule) error {
	if r.ID == "" || r.Filter == "" {
		return fmt.Errorf("%w: acl rule needs an id and a filter", ErrBadEvent)
	}
	switch r.Effect {
	case config.EffectAllow, config.EffectDeny:
	default:
		return fmt.Errorf("%w: acl effect %q", ErrBadEvent, r.Effect)
	}
	switch r.Action {
	case config.ActionPublish, config.ActionSubscribe, config.ActionAll:
	default:
		return fmt.Errorf("%w: acl action %q", ErrBadEvent, r.Action)
	}
	return nil
}

func buildInstances(list []config.Instance) (map[string]*instance, error) {
	out := make(map[string]*instance, len(list))
	for _, ci := range list {
		if ci.ID == "" {
			return nil, fmt.Errorf("%w: instance without id", ErrBadEvent)
		}
		in := newInstance(ci)
		in.creds = make(map[string]cred, len(ci.Credentials))
		in.credByID = make(map[string]string, len(ci.Credentials))
		for _, c := range ci.Credentials {
			cc, err := toCred(c)
			if err != nil {
				return nil, fmt.Errorf("instance %s: %w", ci.ID, err)
			}
			in.creds[c.Username] = cc
			in.credByID[cc.id] = c.Username
		}
		for _, r := range ci.ACL {
			if err := validateRule(r); err != nil {
				return nil, fmt.Errorf("instance %s: %w", ci.ID, err)
			}
		}
		in.acl = append([]config.ACLRule(nil), ci.ACL...)
		in.topics = append([]config.Topic(nil), ci.Topics...)
		for _, k := range ci.TokenKeys {
			in.keys[k.KID] = k
		}
		for _, r := range ci.RevokedTokens {
			in.revoked[r.JTI] = r.ExpiresAt
		}
		out[ci.ID] = in
	}
	return out, nil
}

// Snapshot returns the whole state as a snapshot (for the disk cache).
func (s *State) Snapshot() config.Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	snap := config.Snapshot{Revision: s.rev, NodeID: s.nodeID, Instances: make([]config.Instance, 0, len(s.instances))}
	for _, in := range s.instances {
		ci := in.meta
		ci.Credentials = make([]config.Credential, 0, len(in.creds))
		for user, c := range in.creds {
			cc := config.Credential{ID: c.id, Username: user, ClientIDPattern: c.clientIDPattern(), Enabled: c.enabled}
			if c.phc != nil {
				cc.PasswordHash = *c.phc
			} else {
				cc.SecretSHA256 = append([]byte(nil), c.hash[:]...)
			}
			if c.expires != 0 {
				t := time.Unix(int64(c.expires), 0).UTC()
				cc.ExpiresAt = &t
			}
			ci.Credentials = append(ci.Credentials, cc)
		}
		ci.ACL = append([]config.ACLRule(nil), in.acl...)
		ci.Topics = append([]config.Topic(nil), in.topics...)
		for _, k := range in.keys {
			ci.TokenKeys = append(ci.TokenKeys, k)
		}
		for jti, exp := range in.revoked {
			ci.RevokedTokens = append(ci.RevokedTokens, config.RevokedToken{JTI: jti, ExpiresAt: exp})
		}
		snap.Instances = append(snap.Instances, ci)
	}
	return snap
}

// InstanceIDs lists the instances placed on this node.
func (s *State) InstanceIDs() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := make([]string, 0, len(s.instances))
	for id := range s.instances {
		ids = append(ids, id)
	}
	return ids
}

// Instance returns an instance's settings (no children) and whether it is
// known.
func (s *State) Instance(id string) (config.Instance, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	in, ok := s.instances[id]
	if !ok {
		return config.Instance{}, false
	}
	return in.meta, true
}

// AuthResult is the outcome of checking a device's password.
type AuthResult int

// Authentication outcomes.
const (
	AuthOK AuthResult = iota
	AuthUnknownInstance
	AuthInstanceUnavailable // suspended or being deleted
	AuthBadCredentials      // unknown username or wrong password
	AuthDisabled
	AuthExpired
	AuthClientIDRefused
)

// CheckPassword checks a username/password against the instance's
// credentials: a generated secret by its SHA-256 (constant-time compare), a
// tenant-supplied password with bcrypt (outside the state lock). It returns
// the credential's ID on success.
func (s *State) CheckPassword(instanceID, username string, password []byte, clientID string, now time.Time) (string, AuthResult) {
	c, res := s.lookupCred(instanceID, username)
	if res != AuthOK {
		return "", res
	}
	if c.phc != nil {
		h := sha256.New()
		h.Write([]byte(*c.phc))
		h.Write([]byte{0})
		h.Write(password)
		var key [32]byte
		h.Sum(key[:0])
		if v, ok := s.verified.Load(c.id); !ok || subtle.ConstantTimeCompare(v.(*[32]byte)[:], key[:]) != 1 {
			if bcrypt.CompareHashAndPassword([]byte(*c.phc), password) != nil {
				return "", AuthBadCredentials
			}
			s.verified.Store(c.id, &key)
		}
	} else {
		sum := sha256.Sum256(password)
		if subtle.ConstantTimeCompare(sum[:], c.hash[:]) != 1 {
			return "", AuthBadCredentials
		}
	}
	if !c.enabled {
		return "", AuthDisabled
	}
	if c.expires != 0 && now.Unix() >= int64(c.expires) {
		return "", AuthExpired
	}
	if c.pattern != nil && !MatchClientID(*c.pattern, clientID, username) {
		return "", AuthClientIDRefused
	}
	return c.id, AuthOK
}

func (s *State) lookupCred(instanceID, username string) (cred, AuthResult) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	in, ok := s.instances[instanceID]
	if !ok {
		return cred{}, AuthUnknownInstance
	}
	if !usable(in.meta.Status) {
		return cred{}, AuthInstanceUnavailable
	}
	c, ok := in.creds[username]
	if !ok {
		return cred{}, AuthBadCredentials
	}
	return c, AuthOK
}

// ACL returns the instance's rules (shared; do not modify).
func (s *State) ACL(instanceID string) []config.ACLRule {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if in, ok := s.instances[instanceID]; ok {
		return in.acl
	}
	return nil
}

// Topics returns the instance's provisioned topics (shared; do not modify)
// and whether it is in strict topic mode.
func (s *State) Topics(instanceID string) ([]config.Topic, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if in, ok := s.instances[instanceID]; ok {
		return in.topics, in.meta.StrictTopics
	}
	return nil, false
}

// Topic returns one provisioned topic of the instance.
func (s *State) Topic(instanceID, id string) (config.Topic, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if in, ok := s.instances[instanceID]; ok {
		for _, t := range in.topics {
			if t.ID == id {
				return t, true
			}
		}
	}
	return config.Topic{}, false
}

// TokenKey returns the instance's token verification key with this kid.
func (s *State) TokenKey(instanceID, kid string) (config.TokenKey, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if in, ok := s.instances[instanceID]; ok {
		k, ok := in.keys[kid]
		return k, ok
	}
	return config.TokenKey{}, false
}

// TokenRevoked reports whether the token jti of the instance is revoked.
func (s *State) TokenRevoked(instanceID, jti string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if in, ok := s.instances[instanceID]; ok {
		_, revoked := in.revoked[jti]
		return revoked
	}
	return false
}

// Credentials counts the credentials held (all instances).
func (s *State) Credentials() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, in := range s.instances {
		n += len(in.creds)
	}
	return n
}
