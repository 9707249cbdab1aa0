// Package mqtttopic owns Aerie's MQTT topic rules: what a topic name and a
// topic filter may be (MQTT 5 §4.7 plus the levels the broker keeps), how
// a filter matches a topic, how two filters relate (covers, intersects),
// shared-subscription names, the mount that puts an instance's topics in
// its own namespace inside the shared broker, and an index that matches a
// topic against many filters at once.
//
// Two matching rules live here on purpose:
//   - Match (and Index) is delivery: MQTT's rule that a filter starting
//     with a wildcard never matches a topic starting with "$"
//     [MQTT-4.7.2-1]. The store and the sessions use it.
//   - MatchLevels, Covers and Intersects compare levels only. They are
//     the set relations authorization uses: an ACL rule or a provisioned
//     topic "#" is about every topic of the instance, its "$" topics
//     included (the default allow-"#" rule lets devices use "$app/…").
//     The gateway's ACL, device tokens and topic policies use them.
package mqtttopic

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// MaxLen is the longest topic name or filter MQTT can carry (bytes).
const MaxLen = 65535

// MaxLevelBytes bounds one level of a device's topic or filter (bytes).
const MaxLevelBytes = 512

// Why a topic name or filter is not one (CheckTopic, CheckFilter).
var (
	ErrEmpty    = errors.New("is empty")
	ErrTooLong  = errors.New("is longer than 65,535 bytes")
	ErrNotUTF8  = errors.New("is not UTF-8")
	ErrNUL      = errors.New("contains NUL")
	ErrWildcard = errors.New("a topic name cannot contain wildcards (+, #)")
	ErrHash     = errors.New("# must be a whole level and the last one")
	ErrPlus     = errors.New("+ must be a whole level")
)

// CheckTopic reports why t is not an MQTT topic name (nil if it is): empty,
// too long, not UTF-8, NUL, or a wildcard.
func CheckTopic(t string) error {
	if err := checkString(t); err != nil {
		return err
	}
	if HasWildcard(t) {
		return ErrWildcard
	}
	return nil
}

// CheckFilter reports why f is not an MQTT topic filter (nil if it is):
// empty, too long, not UTF-8, NUL, '#' other than a whole last level, or
// '+' other than a whole level.
func CheckFilter(f string) error {
	if err := checkString(f); err != nil {
		return err
	}
	for rest, more := f, true; more; {
		var l string
		l, rest, more = strings.Cut(rest, "/")
		switch {
		case strings.Contains(l, "#") && (l != "#" || more):
			return ErrHash
		case strings.Contains(l, "+") && l != "+":
			return ErrPlus
		}
	}
	return nil
}

func checkString(s string) error {
	switch {
	case s == "":
		return ErrEmpty
	case len(s) > MaxLen:
		return ErrTooLong
	case !utf8.ValidString(s):
		return ErrNotUTF8
	case strings.IndexByte(s, 0) >= 0:
		return ErrNUL
	}
	return nil
}

// HasWildcard reports whether s holds '+' or '#' (in a valid filter: a
// wildcard level).
func HasWildcard(s string) bool { return strings.ContainsAny(s, "+#") }

// Reserved reports whether s starts with a "$" level the broker keeps, in
// any case: "$SYS" (its statistics) or "$share" (shared subscriptions).
// Other "$" levels ("$app/…") are an instance's own topics.
func Reserved(s string) bool {
	first, _, _ := strings.Cut(s, "/")
	return strings.EqualFold(first, "$SYS") || strings.EqualFold(first, "$share")
}

// LevelsOK reports whether no level of s is longer than MaxLevelBytes and
// s has at most maxLevels levels (0: no limit).
func LevelsOK(s string, maxLevels int) bool {
	n := 1
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '/' {
			if i-start > MaxLevelBytes {
				return false
			}
			if i < len(s) {
				n++
			}
			start = i + 1
		}
	}
	return maxLevels <= 0 || n <= maxLevels
}

// ValidTopic reports whether a device may publish to t: a topic name, not
// Reserved, within LevelsOK. A leading "/" (an empty first level) is legal
// MQTT; under the mount it is an empty level inside the instance.
func ValidTopic(t string, maxLevels int) bool {
	return CheckTopic(t) == nil && !Reserved(t) && LevelsOK(t, maxLevels)
}

// ValidFilter reports whether a device may subscribe to f: a filter, not
// Reserved ("$share/…" is taken apart by SplitShared first), within
// LevelsOK.
func ValidFilter(f string, maxLevels int) bool {
	return CheckFilter(f) == nil && !Reserved(f) && LevelsOK(f, maxLevels)
}

// Match reports whether topic matches filter under MQTT's rules, "a/#"
// matching "a" and a filter starting with a wildcard never matching a
// topic starting with "$" [MQTT-4.7.2-1].
func Match(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	return MatchLevels(filter, topic)
}

// MatchLevels is Match without the "$" rule: level by level only (see the
// package doc for who uses which).
func MatchLevels(filter, topic string) bool {
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore && !tmore {
			return true
		}
		if !fmore {
			return false
		}
		if !tmore {
			// "a/#" matches "a" too.
			return frest == "#"
		}
		filter, topic = frest, trest
	}
}

// Covers reports whether every topic matching filter sub also matches
// filter rule (levels only).
func Covers(rule, sub string) bool {
	for {
		rl, rrest, rmore := strings.Cut(rule, "/")
		if rl == "#" {
			return true
		}
		sl, srest, smore := strings.Cut(sub, "/")
		switch {
		case sl == "#":
			return false // sub reaches deeper than a non-# rule level
		case rl == "+":
		case sl == "+" || rl != sl:
			return false
		}
		if !rmore && !smore {
			return true
		}
		if !rmore {
			return false
		}
		if !smore {
			return rrest == "#"
		}
		rule, sub = rrest, srest
	}
}

// Intersects reports whether some topic matches both filters (levels
// only).
func Intersects(a, b string) bool {
	for {
		al, arest, amore := strings.Cut(a, "/")
		bl, brest, bmore := strings.Cut(b, "/")
		if al == "#" || bl == "#" {
			return true
		}
		if al != "+" && bl != "+" && al != bl {
			return false
		}
		switch {
		case !amore && !bmore:
			return true
		case !amore:
			return brest == "#" // "a" and "a/#" share "a"
		case !bmore:
			return arest == "#"
		}
		a, b = arest, brest
	}
}

// SplitShared splits "$share/<group>/<filter>" into group and filter; ok
// tells a shared subscription, and a malformed one has an empty group.
func SplitShared(f string) (group, filter string, ok bool) {
	rest, shared := strings.CutPrefix(f, "$share/")
	if !shared {
		return "", f, false
	}
	i := strings.IndexByte(rest, '/')
	if i <= 0 || i == len(rest)-1 {
		return "", "", true
	}
	return rest[:i], rest[i+1:], true
}
