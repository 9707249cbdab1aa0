package store

import (
	"context"
	"time"
)

// Backend is the message store as the data plane's session layer and
// gateway use it: a durable per-instance commit log read through light
// queues (a concrete topic or a wildcard filter), persistent sessions with
// subscriptions and cursors, retained messages with their quota, wills and
// retention. Two implementations exist: *Store (RocksDB, one node) and
// jsstore.Store (NATS JetStream, replicated). The suite in
// dataplane/store/storetest states the contract both pass.
//
// Guarantees every implementation gives:
//
//   - Durability: Append and Retain return nil only once the write is
//     durable under the backend's stated policy (RocksDB: WAL fsync per
//     group commit; JetStream: stream PubAck with sync_always, from a
//     quorum of replicas when replicated). The gateway sends PUBACK/PUBREC
//     after that.
//   - Offsets: Append returns one offset per message, strictly increasing
//     per instance in append order. Offsets are the queue sequence of every
//     queue the message is in (an offset is comparable across the queues of
//     one instance; RocksDB's offsets are also global across instances,
//     JetStream's are per instance: callers must not compare offsets of
//     different instances). 0 is "before the first message".
//   - Queues: Pull(instance, q, after, n) returns the next entries of q with
//     offsets > after, oldest first, each exactly once, skipping messages
//     past retention or MQTT 5 expiry. A wildcard filter's queue holds every
//     message appended while a persistent session subscribes to the filter
//     whose topic the filter matches under MQTT rules (parent-level '#', no
//     wildcard-leading match of '$' topics). RocksDB indexes a wildcard
//     queue only while it has a subscriber; JetStream reads any filter over
//     the whole log, so it returns earlier messages too: callers read after
//     the subscription's cursor, where both agree.
//   - Cursors: Subscribe starts a persistent subscription after the current
//     end of the instance's log (Subscription.Since; the returned cursor).
//     PullSession hands out entries after the session's read position; Ack
//     moves the persisted cursor over the leading run of acknowledged
//     entries only; Resume restarts reading from the persisted cursors, so
//     unacknowledged entries come again and none after a cursor is skipped.
//   - Wills and expiry: ExpireSessions returns each due will once (the
//     record is rewritten without it before it is returned) and deletes
//     sessions whose expiry elapsed since they disconnected.
//   - Retained: one message per topic; an empty payload clears it; the
//     instance's retained count (RetainedFull, Stats) is exact on return.
//   - Retention: MaxAge and MaxBytes from SetLimits drop the oldest
//     messages of the instance, at the latest after EnforceRetention (the
//     JetStream backend enforces them in the server continuously).
type Backend interface {
	// Append stores msgs durably (see above) and returns their offsets.
	Append(ctx context.Context, msgs []Message) ([]uint64, error)
	// Pull reads a queue after an offset (see above).
	Pull(ctx context.Context, instance, queue string, after uint64, limit int) ([]Entry, error)
	// Events signals (coalesced) that TakeEvents has queue events: queues
	// with a persistent subscriber that received messages.
	Events() <-chan struct{}
	// TakeEvents returns and clears the pending queue events.
	TakeEvents() []QueueEvent

	// SaveSession creates or updates a session record (keeps subscriptions
	// and cursors).
	SaveSession(ctx context.Context, sess Session) error
	// LoadSession returns a session with subscriptions and persisted
	// cursors, or ErrNoSession.
	LoadSession(ctx context.Context, instance, clientID string) (*Session, error)
	// DeleteSession removes a session, its subscriptions and cursors.
	DeleteSession(ctx context.Context, instance, clientID string) error
	// Subscribe adds or updates a subscription; a new one's cursor starts
	// at the log end, which it returns.
	Subscribe(ctx context.Context, instance, clientID string, sub Subscription) (uint64, error)
	// Unsubscribe removes a subscription and its cursor.
	Unsubscribe(ctx context.Context, instance, clientID, filter string) error
	// Resume marks a session connected and positions its reads at the
	// persisted cursors.
	Resume(ctx context.Context, instance, clientID string) (*Session, error)
	// Disconnect marks a session offline at `at` and drops its read state.
	Disconnect(ctx context.Context, instance, clientID string, at time.Time) error
	// PullSession reads a resumed session's queue and marks the entries in flight.
	PullSession(ctx context.Context, instance, clientID, queue string, limit int) ([]Entry, error)
	// Ack acknowledges one in-flight entry; it reports whether the
	// persisted cursor moved.
	Ack(ctx context.Context, instance, clientID, queue string, offset uint64) (bool, error)
	// Inflight counts a session's entries awaiting an ack.
	Inflight(instance, clientID string) int
	// SessionsOn lists the persistent sessions subscribed to a queue.
	SessionsOn(instance, queue string) []string
	// Sessions lists an instance's sessions with subscriptions and backlog.
	Sessions(ctx context.Context, instance string, capPerQueue int) ([]SessionInfo, error)
	// ExpireSessions returns due wills and removes expired sessions.
	ExpireSessions(ctx context.Context, now time.Time) (Expired, error)
	// DisconnectAll marks every session recorded as connected (and not
	// resumed by this process) disconnected at `at`.
	DisconnectAll(ctx context.Context, at time.Time) (int, error)

	// Retain sets (or clears, for an empty payload) a topic's retained
	// message; ErrRetainedQuota beyond MaxRetained.
	Retain(ctx context.Context, m Message) error
	// Retained returns the unexpired retained messages matching filter.
	Retained(ctx context.Context, instance, filter string) ([]Message, error)
	// AllRetained returns every unexpired retained message of an instance.
	AllRetained(ctx context.Context, instance string) ([]Message, error)
	// DeleteRetained removes all retained messages of an instance.
	DeleteRetained(ctx context.Context, instance string) ([]string, error)
	// RetainedFull reports whether a new retained topic would exceed MaxRetained.
	RetainedFull(instance, topic string) bool
	// RetainedInstances lists the instances with retained messages.
	RetainedInstances() []string

	// SetLimits sets an instance's storage limits.
	SetLimits(instance string, l Limits)
	// EnforceRetention applies MaxAge/MaxBytes now.
	EnforceRetention(ctx context.Context, now time.Time) error
	// Stats returns an instance's storage figures.
	Stats(instance string) Stats
	// Instances lists the instances with stored log bytes.
	Instances() []string
	// IO returns process-lifetime I/O counters.
	IO() IOStats

	// Close releases the backend; queued appends are committed first.
	Close() error
}

// TopicLog is the part of the store that the consume service (server-side
// topic queues and consumer groups), the forwarding rules and the
// gateway's topic configuration use. *Store (RocksDB) and jsstore.Store
// implement it; the storetest suite's TopicLog cases state the contract.
//
// Offsets are those of Backend (per instance on JetStream: LastOffset and
// every cursor are only comparable within their instance). Group cursors
// are shared by every node of a cell; CommitGroup never moves a cursor
// backwards on a replicated backend (a lower offset is ignored).
type TopicLog interface {
	// SetTopics makes the instance's provisioned topic queues exactly topics.
	SetTopics(ctx context.Context, instance string, topics []TopicQueue) error
	// TopicStats returns the storage of the instance's topic queues, by filter.
	TopicStats(ctx context.Context, instance string) ([]TopicStats, error)
	// TopicInstances lists the instances that have topic queues.
	TopicInstances() []string
	// GroupCursor returns a group's committed offset and whether it exists.
	GroupCursor(ctx context.Context, instance, queue, group string) (uint64, bool, error)
	// CommitGroup stores a group's committed offset durably.
	CommitGroup(ctx context.Context, instance, queue, group string, off uint64) error
	// DeleteGroup forgets a group's cursor.
	DeleteGroup(ctx context.Context, instance, queue, group string) error
	// Groups lists the groups with a cursor on a queue, by name.
	Groups(ctx context.Context, instance, queue string) ([]GroupCursorInfo, error)
	// QueueLag counts a queue's readable entries after an offset (at most
	// limit) and reports when the first of them was stored.
	QueueLag(ctx context.Context, instance, queue string, after uint64, limit int) (n int, capped bool, oldest time.Time, err error)
	// LastOffset is the offset of the instance's last message (0: none).
	LastOffset(ctx context.Context, instance string) (uint64, error)
	// Changed returns a channel closed at the next append (on a cell: an
	// append on any node).
	Changed() <-chan struct{}
}

// DeadLetterStore keeps the dead-letter lists of forwarding rules: copies
// of the messages a rule gave up on, by offset, shared by every node of a
// cell. The forwarder bounds a list (forward.MaxDeadLetters).
type DeadLetterStore interface {
	// PutDeadLetters adds (or replaces, by offset) entries durably.
	PutDeadLetters(ctx context.Context, instance, rule string, ds []DeadLetter) error
	// DeadLetters returns up to limit entries with offsets above after,
	// by offset.
	DeadLetters(ctx context.Context, instance, rule string, after uint64, limit int) ([]DeadLetter, error)
	// CountDeadLetters counts a rule's entries.
	CountDeadLetters(ctx context.Context, instance, rule string) (int, error)
	// DeleteDeadLetters removes the given offsets (all entries when nil).
	DeleteDeadLetters(ctx context.Context, instance, rule string, offsets []uint64) error
}

// Lease is a named role held by one node of a cell at a time (a
// forwarding rule's runner).
type Lease struct {
	Owner   string    // the holding node ("" when never held or released)
	Expires time.Time // the owner's hold ends then unless renewed (holder's clock)
	Info    []byte    // what the owner published with its last renewal
	Pokes   uint64    // requests other nodes left for the owner (PokeLease)
}

// Leases grant roles to one node of a cell at a time (only replicated
// backends implement it; a lone node runs every role itself).
type Leases interface {
	// AcquireLease takes or renews the lease for this node for ttl, with
	// info, when it is free, already this node's, expired, or held by a
	// node that left the cell (compare-and-set: one winner). It returns
	// the lease as it is now and whether this node holds it.
	AcquireLease(ctx context.Context, name string, ttl time.Duration, info []byte) (Lease, bool, error)
	// ReadLease returns a lease as it is (Owner "" when nobody holds it).
	ReadLease(ctx context.Context, name string) (Lease, error)
	// PokeLease counts a request for the lease's owner (Lease.Pokes).
	PokeLease(ctx context.Context, name string) error
	// ReleaseLease gives the lease up if this node holds it.
	ReleaseLease(ctx context.Context, name string) error
}

var (
	_ Backend         = (*Store)(nil)
	_ TopicLog        = (*Store)(nil)
	_ DeadLetterStore = (*Store)(nil)
)

// EncodeRecord appends the log record encoding of m to dst: the byte format
// of the RocksDB log, which other backends store as their message body.
func EncodeRecord(dst []byte, m *Message) []byte { return encodeMessage(dst, m) }

// DecodeRecord decodes a record made by EncodeRecord.
func DecodeRecord(b []byte) (*Message, error) { return decodeMessage(b) }

// CheckName returns ErrInvalidName for an empty name or one containing
// U+0000 (the instance, topic and client ID rule of every backend).
func CheckName(kind, s string) error { return checkName(kind, s) }
