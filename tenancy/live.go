package tenancy

import (
	"context"
	"strings"

	"github.com/aeriemq/aerie/nodelink"
)

// NodeInspector reads live state from the data-plane node serving an
// instance (never from Postgres): its connected clients and persistent
// sessions, and disconnects or discards one. The API and the console read
// through it; cmd/aerie implements it over the node API (in-process in
// `aerie serve`).
type NodeInspector interface {
	// Clients lists the instance's connected clients on node nodeID.
	Clients(ctx context.Context, nodeID, instanceID string) ([]nodelink.ClientInfo, error)
	// Disconnect closes the instance's client clientID on node nodeID;
	// false when it is not connected there.
	Disconnect(ctx context.Context, nodeID, instanceID, clientID string) (bool, error)
	// PendingUsage is the instance's usage counted on the node since its
	// last usage report, with its gauges (connections) now.
	PendingUsage(ctx context.Context, nodeID, instanceID string) (nodelink.InstanceUsage, error)
	// Sessions lists the instance's persistent sessions with their backlog.
	Sessions(ctx context.Context, nodeID, instanceID string) ([]nodelink.SessionInfo, error)
	// DiscardSession deletes an offline persistent session; false when
	// there is none (ErrConflict-wrapped error while it is online).
	DiscardSession(ctx context.Context, nodeID, instanceID, clientID string) (bool, error)
}

// FilterClients keeps the clients whose client ID, username or remote
// address contains q (case-insensitive), after the client ID after, at
// most limit of them; next is the last one's ID when more follow.
func FilterClients(list []nodelink.ClientInfo, q, after string, limit int) (page []nodelink.ClientInfo, next string) {
	return filterLive(list, func(c nodelink.ClientInfo) string { return c.ClientID },
		func(c nodelink.ClientInfo) []string { return []string{c.ClientID, c.Username, c.RemoteAddr} }, q, after, limit)
}

// FilterSessions is FilterClients for sessions (by client ID).
func FilterSessions(list []nodelink.SessionInfo, q, after string, limit int) (page []nodelink.SessionInfo, next string) {
	return filterLive(list, func(s nodelink.SessionInfo) string { return s.ClientID },
		func(s nodelink.SessionInfo) []string { return []string{s.ClientID} }, q, after, limit)
}

// filterLive pages a live list (sorted by client ID) with a search: the
// items after the ID after, one of whose fields contains q
// (case-insensitive), at most limit of them (never nil).
func filterLive[T any](list []T, id func(T) string, fields func(T) []string, q, after string, limit int) ([]T, string) {
	q = strings.ToLower(q)
	page := []T{}
	for _, it := range list {
		if after != "" && id(it) <= after {
			continue
		}
		if q != "" && !containsAny(fields(it), q) {
			continue
		}
		if len(page) == limit {
			return page, id(page[len(page)-1])
		}
		page = append(page, it)
	}
	return page, ""
}

func containsAny(fields []string, lowerQ string) bool {
	for _, f := range fields {
		if strings.Contains(strings.ToLower(f), lowerQ) {
			return true
		}
	}
	return false
}
