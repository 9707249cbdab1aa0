package gateway

import (
	"strings"
)

// Topic rules shared by the isolation and ACL code. Every instance's topics
// live under its mount "<instance-id>/" inside the shared broker; the
// device never sees the mount.

// maxLevelLen bounds one topic level (bytes).
const maxLevelLen = 512

// validTopic reports whether a device may publish to topic: not empty, no
// wildcard, no NUL, not the broker's own "$SYS" (or "$share", the shared
// subscription prefix) and no level longer than maxLevelLen. maxLevels (0 =
// no limit) caps the depth. A leading "/" (an empty first level) is legal
// MQTT and common in devices; under the mount "<instance>/" it is just an
// empty level inside the instance. Other "$" topics are the instance's own
// (see mountTopic).
func validTopic(topic string, maxLevels int) bool {
	if topic == "" || strings.ContainsAny(topic, "+#\x00") || reservedDollar(topic) {
		return false
	}
	return levelsOK(topic, maxLevels)
}

// reservedDollar reports whether s starts with a "$" level the broker
// keeps: $SYS (its own statistics) or $share (shared subscriptions).
func reservedDollar(s string) bool {
	first, _, _ := strings.Cut(s, "/")
	return strings.EqualFold(first, "$SYS") || strings.EqualFold(first, "$share")
}

// mountTopic puts a device's topic or filter into its instance's
// namespace: "<instance>/t", or "$<instance>/$t" for a topic starting with
// "$", so that the instance's "#" and "+" filters ("<instance>/#") never
// match its "$" topics [MQTT-4.7.2-1], while "$t/#" ("$<instance>/$t/#")
// does.
func mountTopic(mount, t string) string {
	if strings.HasPrefix(t, "$") {
		return "$" + mount + t
	}
	return mount + t
}

// unmountTopic takes the mount off a topic or filter; ok is false for one
// outside the namespace.
func unmountTopic(mount, t string) (string, bool) {
	if rest, ok := strings.CutPrefix(t, "$"+mount); ok && strings.HasPrefix(rest, "$") {
		return rest, true
	}
	return strings.CutPrefix(t, mount)
}

// validFilter reports whether a device may subscribe to filter (wildcards
// allowed where MQTT allows them).
func validFilter(filter string, maxLevels int) bool {
	if filter == "" || strings.ContainsRune(filter, 0) || reservedDollar(filter) {
		return false
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return false
		case strings.Contains(l, "#") && l != "#":
			return false
		case strings.Contains(l, "+") && l != "+":
			return false
		}
	}
	return levelsOK(filter, maxLevels)
}

func levelsOK(s string, maxLevels int) bool {
	n := 1
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '/' {
			if i-start > maxLevelLen {
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

// splitShared splits "$share/<group>/<filter>" into group and filter.
func splitShared(f string) (group, filter string, ok bool) {
	if !strings.HasPrefix(f, "$share/") {
		return "", f, false
	}
	rest := f[len("$share/"):]
	i := strings.IndexByte(rest, '/')
	if i <= 0 || i == len(rest)-1 {
		return "", "", true
	}
	return rest[:i], rest[i+1:], true
}

// topicMatch reports whether topic matches filter (MQTT rules).
func topicMatch(filter, topic string) bool {
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

// covers reports whether every topic matching sub also matches rule.
func covers(rule, sub string) bool {
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
