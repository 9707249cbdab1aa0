package configsync

import (
	"crypto/ed25519"
	"fmt"

	"github.com/aeriemq/aerie/dataplane/config"
)

// apply applies ev and returns the changes to tell listeners of (State.Apply
// tells them, outside the lock). A snapshot replaces everything; any other
// event applies once, above the current revision, all or nothing.
func (s *State) apply(ev config.Event) ([]Change, error) {
	switch ev.Kind {
	case config.KindSnapshot:
		return s.applySnapshot(ev)
	case config.KindHeartbeat:
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ev.Revision <= s.rev {
		return nil, nil
	}
	ch := Change{Revision: ev.Revision, Kind: ev.Kind, InstanceID: ev.InstanceID}
	var err error
	switch ev.Kind {
	case config.KindInstancePut:
		err = s.putInstanceLocked(ev, &ch)
	case config.KindInstanceStatus:
		err = s.setInstanceStatusLocked(ev, &ch)
	case config.KindInstanceDelete:
		delete(s.instances, ev.InstanceID)
		ch.Revoked = true
	default:
		err = s.applyChildLocked(ev, &ch)
	}
	if err != nil {
		return nil, err
	}
	s.rev = ev.Revision
	return []Change{ch}, nil
}

// applySnapshot replaces every instance with the snapshot's. Instances gone
// from the snapshot revoke their connections; so do credentials that
// disappeared or changed.
func (s *State) applySnapshot(ev config.Event) ([]Change, error) {
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

// putInstanceLocked adds or replaces a whole instance; a replaced one
// re-authenticates everyone.
func (s *State) putInstanceLocked(ev config.Event, ch *Change) error {
	if ev.Instance == nil || ev.Instance.ID == "" {
		return fmt.Errorf("%w: instance.put without instance", ErrBadEvent)
	}
	built, err := buildInstances([]config.Instance{*ev.Instance})
	if err != nil {
		return err
	}
	ch.InstanceID = ev.Instance.ID
	ch.Revoked = s.instances[ev.InstanceID] != nil // a replaced instance: re-authenticate everyone
	s.instances[ev.Instance.ID] = built[ev.Instance.ID]
	return nil
}

// setInstanceStatusLocked changes an instance's status, anonymous access and
// limit; an unusable or suspended instance revokes its connections.
func (s *State) setInstanceStatusLocked(ev config.Event, ch *Change) error {
	if ev.Instance == nil {
		return fmt.Errorf("%w: instance.status without instance", ErrBadEvent)
	}
	inst := s.instances[ev.Instance.ID]
	if inst == nil {
		return fmt.Errorf("%w: status of unknown instance %q", ErrBadEvent, ev.Instance.ID)
	}
	ch.InstanceID = ev.Instance.ID
	inst.meta.Status, inst.meta.AllowAnonymous, inst.meta.Limited = ev.Instance.Status, ev.Instance.AllowAnonymous, ev.Instance.Limited
	ch.Revoked = !usable(inst.meta.Status) || inst.meta.Limited == config.LimitSuspend
	return nil
}

// applyChildLocked applies an event about a part of an existing instance
// (ev.InstanceID): a credential, an ACL rule, quotas, a token key or
// revocation, a topic.
func (s *State) applyChildLocked(ev config.Event, ch *Change) error {
	var apply func(*instance, config.Event, *Change) error
	switch ev.Kind {
	case config.KindCredentialPut:
		apply = (*instance).putCredential
	case config.KindCredentialDel:
		apply = (*instance).deleteCredential
	case config.KindACLPut:
		apply = (*instance).putACLRule
	case config.KindACLReplace:
		apply = (*instance).replaceACL
	case config.KindACLDelete:
		apply = (*instance).deleteACLRule
	case config.KindQuotasPut:
		apply = (*instance).putQuotas
	case config.KindTokenKeyPut:
		apply = (*instance).putTokenKey
	case config.KindTokenRevoke:
		apply = (*instance).revokeToken
	case config.KindTopicPut:
		apply = (*instance).putTopic
	case config.KindTopicDelete:
		apply = (*instance).deleteTopic
	case config.KindRulePut, config.KindRuleDelete:
		apply = func(inst *instance, ev config.Event, _ *Change) error { return applyRule(&inst.meta, ev) }
	case config.KindStrictTopics:
		apply = (*instance).setStrictTopics
	default:
		return fmt.Errorf("%w: unknown kind %q", ErrBadEvent, ev.Kind)
	}
	inst := s.instances[ev.InstanceID]
	if inst == nil {
		return fmt.Errorf("%w: %s for unknown instance %q", ErrBadEvent, ev.Kind, ev.InstanceID)
	}
	return apply(inst, ev, ch)
}

func (inst *instance) putCredential(ev config.Event, ch *Change) error {
	if ev.Credential == nil {
		return fmt.Errorf("%w: credential.put without credential", ErrBadEvent)
	}
	c, err := toCred(*ev.Credential)
	if err != nil {
		return err
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
		return fmt.Errorf("%w: username %q already used by %s", ErrBadEvent, ev.Credential.Username, other.id)
	}
	ch.CredentialID = c.id
	inst.creds[ev.Credential.Username] = c
	inst.credByID[c.id] = ev.Credential.Username
	return nil
}

func (inst *instance) deleteCredential(ev config.Event, ch *Change) error {
	ch.CredentialID = ev.ID
	if user, ok := inst.credByID[ev.ID]; ok {
		ch.Username = user
		delete(inst.creds, user)
		delete(inst.credByID, ev.ID)
	}
	ch.Revoked = true
	return nil
}

func (inst *instance) putACLRule(ev config.Event, _ *Change) error {
	if ev.ACLRule == nil {
		return fmt.Errorf("%w: acl.put without rule", ErrBadEvent)
	}
	if err := validateRule(*ev.ACLRule); err != nil {
		return err
	}
	acl := make([]config.ACLRule, 0, len(inst.acl)+1)
	for _, r := range inst.acl {
		if r.ID != ev.ACLRule.ID {
			acl = append(acl, r)
		}
	}
	inst.acl = append(acl, *ev.ACLRule)
	return nil
}

func (inst *instance) replaceACL(ev config.Event, _ *Change) error {
	for _, r := range ev.ACL {
		if err := validateRule(r); err != nil {
			return err
		}
	}
	inst.acl = append([]config.ACLRule(nil), ev.ACL...)
	return nil
}

func (inst *instance) deleteACLRule(ev config.Event, _ *Change) error {
	acl := make([]config.ACLRule, 0, len(inst.acl))
	for _, r := range inst.acl {
		if r.ID != ev.ID {
			acl = append(acl, r)
		}
	}
	inst.acl = acl
	return nil
}

func (inst *instance) putQuotas(ev config.Event, _ *Change) error {
	if ev.Quotas == nil {
		return fmt.Errorf("%w: quotas.put without quotas", ErrBadEvent)
	}
	inst.meta.Quotas = *ev.Quotas
	return nil
}

func (inst *instance) putTokenKey(ev config.Event, _ *Change) error {
	if ev.TokenKey == nil || len(ev.TokenKey.PublicKey) != ed25519.PublicKeySize || ev.TokenKey.KID == "" {
		return fmt.Errorf("%w: tokenkey.put needs a kid and a %d-byte Ed25519 key", ErrBadEvent, ed25519.PublicKeySize)
	}
	inst.keys[ev.TokenKey.KID] = *ev.TokenKey
	return nil
}

func (inst *instance) revokeToken(ev config.Event, ch *Change) error {
	if ev.RevokedToken == nil || ev.RevokedToken.JTI == "" {
		return fmt.Errorf("%w: token.revoke without jti", ErrBadEvent)
	}
	inst.revoked[ev.RevokedToken.JTI] = ev.RevokedToken.ExpiresAt
	ch.JTI, ch.Revoked = ev.RevokedToken.JTI, true
	return nil
}

func (inst *instance) putTopic(ev config.Event, _ *Change) error {
	if ev.Topic == nil || ev.Topic.ID == "" || ev.Topic.Filter == "" {
		return fmt.Errorf("%w: topic.put needs a topic with an id and a filter", ErrBadEvent)
	}
	ts := make([]config.Topic, 0, len(inst.topics)+1)
	for _, t := range inst.topics {
		if t.ID != ev.Topic.ID {
			ts = append(ts, t)
		}
	}
	inst.topics = append(ts, *ev.Topic)
	return nil
}

func (inst *instance) deleteTopic(ev config.Event, _ *Change) error {
	ts := make([]config.Topic, 0, len(inst.topics))
	for _, t := range inst.topics {
		if t.ID != ev.ID {
			ts = append(ts, t)
		}
	}
	inst.topics = ts
	return nil
}

func (inst *instance) setStrictTopics(ev config.Event, _ *Change) error {
	if ev.Strict == nil {
		return fmt.Errorf("%w: topics.strict without strict", ErrBadEvent)
	}
	inst.meta.StrictTopics = *ev.Strict
	return nil
}
