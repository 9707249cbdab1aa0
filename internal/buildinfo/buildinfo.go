// Package buildinfo carries the version stamped into the binary at link
// time (-ldflags "-X github.com/aeriemq/aerie/internal/buildinfo.Version=…").
package buildinfo

import "runtime/debug"

// Version is the release version; "dev" for local builds.
var Version = "dev"

// Commit returns the VCS revision recorded by the Go toolchain, if any.
func Commit() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}
