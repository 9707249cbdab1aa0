package console

import (
	"github.com/aeriemq/aerie/tenancy"
)

// Confirmations of destructive actions say what the action cuts off, from
// what is known when the page is drawn (aerie.js asks in the page; the
// server acts on the confirmed post alone).

// apiKeyRevokeWarning is the confirmation a key's Revoke asks for: who
// stops working, and whether the key is in use.
func apiKeyRevokeWarning(k tenancy.APIKey) string {
	msg := "Revoke “" + k.Name + "”? Scripts, the CLI and Terraform using it stop working at once."
	if k.LastUsedAt == nil {
		return msg + " It has never been used."
	}
	return msg + " It was last used " + when(*k.LastUsedAt) + "."
}

// memberRemoveWarning is the confirmation a member's Remove asks for: they
// lose access, and the API keys they created stop working (a key works
// only while its creator is a member).
func memberRemoveWarning(m tenancy.Member, keysBy map[string]int) string {
	msg := "Remove " + m.Email + " from this organisation? They lose access at once"
	if n := keysBy[m.UserID]; n > 0 {
		return msg + ", and the " + plural(n, "API key they created stops", "API keys they created stop") + " working."
	}
	return msg + "."
}

// keysByCreator counts the org's API keys by the member who created them.
func keysByCreator(keys []tenancy.APIKey) map[string]int {
	out := map[string]int{}
	for _, k := range keys {
		out[k.CreatedBy]++
	}
	return out
}
