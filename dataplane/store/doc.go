// Package store is the data plane's read-amplified message store on RocksDB
// (grocksdb v1.7.14 against the system librocksdb): every QoS≥1 message is
// written once to a commit log, and small index entries in "light queues"
// make it readable per topic and per wildcard filter, so the cost of a
// message does not grow with its subscribers (RocketMQ-MQTT's design).
//
// # On-disk layout (column families)
//
//	log      offset(u64 BE) → record: version | uvarint time(ms) | flags(qos,
//	         retain, has-props) | str instance | str topic | [props] | payload.
//	         One global, monotonically increasing offset for all instances.
//	lq       instance 0x00 queue 0x00 offset(u64 BE) → empty. Written without
//	         WAL. The queue sequence *is* the log offset, so entries need no
//	         value and no per-queue counter (no read-before-write). 0x00 cannot
//	         occur in instance IDs (validated), MQTT topics, filters or client
//	         IDs, so the encoding is unambiguous. The queue of a concrete topic is
//	         the topic; the queue of a wildcard filter is the filter.
//	         The key 0x00"ckpt" holds the index checkpoint (last indexed
//	         offset). It lives in lq, not meta, so that it is flushed together
//	         with the entries it describes: after a crash the lq CF comes back at
//	         its last flush and its checkpoint matches it exactly.
//	session  instance 0x00 client 0x00 'm' → session record (JSON: version,
//	         expiry, disconnect time, will, subscriptions);
//	         instance 0x00 client 0x00 'c' queue → cursor (u64 BE offset).
//	retain   instance 0x00 topic → record (same encoding as log).
//	meta     'b' 0x00 instance → stored log bytes; 'f' 0x00 instance →
//	         retention floor. The byte counters are written in the same
//	         WriteBatch as the log records they count.
//
// # Writing: group commit
//
// Append hands messages to one writer goroutine. It gathers concurrent
// appends (for at most Options.SyncDelay under SyncBatch; whatever is queued
// under SyncAlways/SyncNone), assigns offsets, writes the log records and
// counters in one WriteBatch with one WAL fsync (SyncNone: no fsync), then
// the index entries and checkpoint in a second, WAL-less batch, fills the
// tail caches, raises queue events and only then releases the callers: the
// gateway sends PUBACK/PUBREC when Append returns nil. The store appends
// what it is given; the gateway passes QoS0 messages only when a server-side
// reader or retention policy asks for them.
//
// # Light queues and wildcard filters
//
// Each message gets one entry in its topic's queue and one in every wildcard
// queue of its instance that it matches. A wildcard queue exists while at
// least one persistent session subscribes to the filter: Subscribe registers
// it between two group commits (so a new subscription sees exactly the
// messages after its starting cursor) and the last Unsubscribe/DeleteSession
// drops it with one DeleteRange. On Open the filters are rebuilt from the
// session CF and the index is caught up from the log beyond its checkpoint;
// RebuildIndex redoes the whole index.
//
// # Delivery: push–pull
//
// A commit raises a coalesced event per queue that has a persistent
// subscriber (Events signals, TakeEvents returns one QueueEvent per queue).
// The gateway maps an event to sessions with SessionsOn, and every online
// one (after Resume) calls PullSession with its free receive-maximum window
// and Ack per PUBACK/PUBCOMP. Pulls near the head are served from a per-queue
// tail cache filled by the writer (a disk read that joins up with the cache
// extends it backwards), so a broadcast to N sessions costs about one store
// read. Ack advances the persisted cursor over the leading run of
// acknowledged entries only; Resume restarts from the cursors, so a
// reconnecting client gets the unacknowledged entries again (QoS1
// duplicates) and nothing is skipped.
//
// # Retention: one shared log, per-instance floors
//
// Instances share the log (one offset space, one sequential key range per
// group commit, 8-byte log keys). A per-instance key prefix would make each
// instance's retention a plain DeleteRange, but costs len(instance)+1 more
// bytes per log key (45 instead of 8 for a UUID instance ID) and needs an
// offset sequence per instance; the shared log keeps a single monotonic
// offset that doubles as queue sequence and cursor. Retention therefore works
// with a floor per instance (every message of the instance at or below it is
// dead):
//
//   - EnforceRetention (run every Options.RetentionInterval: the node's one
//     retention loop) scans the oldest part of the log (reads only) to move
//     each instance's floor past MaxAge and MaxBytes, and lowers its stored
//     byte counter by what it dropped;
//   - readers skip anything at or below the floor immediately (logical expiry);
//   - the log prefix below every live instance's floor is removed with one
//     DeleteRange;
//   - dead records in ranges still shared with live instances, and dead lq
//     entries, are removed by compaction filters that read the floors.
//
// No per-key delete is issued. An instance with no limits keeps its messages
// and so blocks the range delete below them (compaction still applies to the
// others).
//
// # Sessions, wills, retained messages
//
// Persistent sessions (3.1.1 cleanSession=false: Expiry NeverExpire; v5
// session expiry > 0) are stored with subscriptions and one cursor per queue;
// no message is copied per session. ExpireSessions returns due wills (v5 will
// delay, capped by the session expiry) and removes expired sessions; both
// survive restarts because they are in the session CF; at start the gateway
// calls DisconnectAll so sessions that were online when the node stopped
// expire too. Subscription.Since records where a subscription started (the
// gateway uses it to deliver a message matching several subscriptions
// once). Retained messages live in the retain CF, capped by
// Limits.MaxRetained: the store owns that quota and its count, which every
// Retain (set or clear) and DeleteRetained updates before returning, so
// RetainedFull (the gateway's question) is exact at once; the gateway
// clears the messages mochi expires and tells SetLimits of every quota
// change. RetainedInstances lists the instances that have any.
//
// Never call EnableManualCompaction: Debian's librocksdb is built with
// assertions on.
package store
