package ratelimit

import "time"

// LoginLimits are token buckets for login attempts (and password-reset
// mails): Burst attempts at once, then one per Every, separately per email
// and per client address. The API and the console each apply them.
type LoginLimits struct {
	PerEmailBurst int
	PerEmailEvery time.Duration
	PerAddrBurst  int
	PerAddrEvery  time.Duration
}

// DefaultLoginLimits: 5 attempts per email then one every 30 s; 30 per
// client address then one every 2 s.
var DefaultLoginLimits = LoginLimits{PerEmailBurst: 5, PerEmailEvery: 30 * time.Second, PerAddrBurst: 30, PerAddrEvery: 2 * time.Second}

// OrDefault is l, or DefaultLoginLimits when l is zero.
func (l LoginLimits) OrDefault() LoginLimits {
	if l == (LoginLimits{}) {
		return DefaultLoginLimits
	}
	return l
}

// AbuseLimits are token buckets against mass sign-ups and invitation spam:
// Burst at once, then one per Every.
type AbuseLimits struct {
	SignupsPerAddrBurst int
	SignupsPerAddrEvery time.Duration
	InvitesPerOrgBurst  int
	InvitesPerOrgEvery  time.Duration
	ResetsPerAddrBurst  int
	ResetsPerAddrEvery  time.Duration
}

// DefaultAbuseLimits: 5 sign-ups per client address, then one every 12
// minutes (5 an hour); 20 invitations per org, then one every 3 minutes;
// 10 password-reset requests per client address, then one a minute (each
// email also has its login bucket).
var DefaultAbuseLimits = AbuseLimits{SignupsPerAddrBurst: 5, SignupsPerAddrEvery: 12 * time.Minute,
	InvitesPerOrgBurst: 20, InvitesPerOrgEvery: 3 * time.Minute, ResetsPerAddrBurst: 10, ResetsPerAddrEvery: time.Minute}

// OrDefault is l, or DefaultAbuseLimits when l is zero.
func (l AbuseLimits) OrDefault() AbuseLimits {
	if l == (AbuseLimits{}) {
		return DefaultAbuseLimits
	}
	return l
}
