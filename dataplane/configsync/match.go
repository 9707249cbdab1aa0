package configsync

import (
	"path"
	"strings"
)

// MatchClientID matches a client ID against a credential's client-ID
// pattern: shell-style globs (`*`, `?`, `[…]`) after expanding
// ${username}. An invalid pattern matches nothing.
func MatchClientID(pattern, clientID, username string) bool {
	pattern = strings.ReplaceAll(pattern, "${username}", username)
	ok, err := path.Match(pattern, clientID)
	return err == nil && ok
}
