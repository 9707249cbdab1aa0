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
// topic queues and consumer groups) and the gateway's topic configuration
// use. Only *Store implements it so far.
type TopicLog interface {
	SetTopics(ctx context.Context, instance string, topics []TopicQueue) error
	TopicStats(instance string) []TopicStats
	TopicInstances() []string
	GroupCursor(instance, queue, group string) (uint64, bool, error)
	CommitGroup(instance, queue, group string, off uint64) error
	Groups(instance, queue string) ([]GroupCursorInfo, error)
	QueueLag(ctx context.Context, instance, queue string, after uint64, limit int) (n int, capped bool, oldest time.Time, err error)
	LastOffset() uint64
	Changed() <-chan struct{}
}

var (
	_ Backend  = (*Store)(nil)
	_ TopicLog = (*Store)(nil)
)

// EncodeRecord appends the log record encoding of m to dst: the byte format
// of the RocksDB log, which other backends store as their message body.
func EncodeRecord(dst []byte, m *Message) []byte { return encodeMessage(dst, m) }

// DecodeRecord decodes a record made by EncodeRecord.
func DecodeRecord(b []byte) (*Message, error) { return decodeMessage(b) }

// CheckName returns ErrInvalidName for an empty name or one containing
// U+0000 (the instance, topic and client ID rule of every backend).
func CheckName(kind, s string) error { return checkName(kind, s) }
