package configsync

import "time"

// CredentialExpiry returns when the credential credID of the instance
// expires: the zero time if it never does; ok is false when the instance or
// the credential is unknown. The gateway arms a timer with it for each live
// connection the credential authenticated.
func (s *State) CredentialExpiry(instanceID, credID string) (expires time.Time, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	in, found := s.instances[instanceID]
	if !found {
		return time.Time{}, false
	}
	user, found := in.credByID[credID]
	if !found {
		return time.Time{}, false
	}
	if c := in.creds[user]; c.expires != 0 {
		return time.Unix(int64(c.expires), 0), true
	}
	return time.Time{}, true
}
