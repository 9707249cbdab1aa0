package mqtttopic

import "strings"

// An instance's topics live under its mount "<instance>/" inside the
// shared broker and the store; a device never sees the mount. A topic or
// filter starting with "$" is mounted as "$<instance>/$t", so that the
// instance's "#" and "+" filters ("<instance>/#") never match its "$"
// topics [MQTT-4.7.2-1], while "$t/#" ("$<instance>/$t/#") does.

// MountOf is the mount of an instance: "<instance>/".
func MountOf(instance string) string { return instance + "/" }

// Mount puts a topic or filter t into the namespace of mount (MountOf).
func Mount(mount, t string) string {
	if strings.HasPrefix(t, "$") {
		return "$" + mount + t
	}
	return mount + t
}

// Unmount takes mount off a mounted topic or filter; ok is false for one
// outside the namespace.
func Unmount(mount, t string) (string, bool) {
	if rest, ok := strings.CutPrefix(t, "$"+mount); ok && strings.HasPrefix(rest, "$") {
		return rest, true
	}
	return strings.CutPrefix(t, mount)
}
