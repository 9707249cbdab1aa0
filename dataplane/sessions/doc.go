// Package sessions serves MQTT persistent sessions, QoS≥1 durability and
// retained messages from the data plane's store (dataplane/store), as a
// mochi-mqtt v2.7.9 hook plus a push–pull delivery engine.
//
// # Wiring (the gateway)
//
//	h := sessions.New(st, srv, sessions.Options{InstanceOf: instanceOf})
//	srv.AddHook(h, nil) // after the gateway's own hooks; Init runs here
//	...
//	srv.Close()          // stops the hook (Hook.Stop); then st.Close()
//
// InstanceOf maps a client to its instance; messages, retained messages and
// sessions are stored under it with topics and client IDs exactly as mochi
// sees them (the gateway's <instance-id>/ topic prefix and namespaced client
// IDs included). The retained quota is the store's Limits.MaxRetained
// (store.SetLimits per instance).
//
// # Publishing
//
// OnPublish runs before mochi acknowledges: every QoS≥1 message is appended
// once (store.Append, group commit) and the hook blocks until its batch is
// durable, so PUBACK/PUBREC follow a durable write and a publisher's read
// loop stalls while the store is behind (back-pressure). If the store fails,
// an MQTT 5 QoS≥1 publisher gets reason 0x80 and anyone else no
// acknowledgement (the publisher retries). A retained publish is written
// with store.Retain; a new retained topic beyond the quota is refused with
// 0x97 (quota exceeded) for MQTT 5 QoS≥1 and delivered without being
// retained otherwise (MQTT 3.1.1 has no way to say no). At Init the stored
// retained messages are loaded into mochi's retained index, which then
// serves new subscriptions as usual.
//
// # Persistent sessions
//
// MQTT 3.1.1 cleanSession=false and MQTT 5 session expiry > 0. Their
// subscriptions and one cursor per queue live in the store; no message is
// copied per session. mochi's OnSelectSubscribers is only called for shared
// subscriptions, so it cannot filter the fan-out; instead OnSubscribed
// records each granted subscription in the store and then removes the
// client from mochi's topic index (Topics.Unsubscribe). mochi therefore
// never fans out to a persistent session and never holds in-flight copies
// for it, online or offline. The client keeps the subscription in
// State.Subscriptions (restored from the store on reconnect), so UNSUBSCRIBE
// works as usual (OnUnsubscribe drops it from the store and puts it back in
// mochi's index for mochi to remove, so that UNSUBACK reports success).
// Shared subscriptions ($share/…) stay with mochi.
//
// OnSessionEstablish (before mochi inherits an old session) retires the
// previous connection of the session, empties the old mochi client's
// subscriptions and store-driven in-flight entries (so mochi neither
// re-subscribes it nor resends), applies clean start (store.DeleteSession)
// and saves the session record (protocol, expiry, delayed will).
// OnPacketEncode sets CONNACK's session-present flag when the store had the
// session (mochi forgets sessions on restart). OnSessionEstablished calls
// store.Resume and starts the session's pump.
//
// # Push–pull delivery
//
// A commit raises coalesced per-queue events (store.Events/TakeEvents); the
// event loop wakes the online sessions subscribed to those queues (an
// in-memory index, so offline sessions cost nothing). A session's pump calls
// store.PullSession round-robin over its queues within its free window
// (Options.MaxInflight, capped by an MQTT 5 client's receive maximum, minus
// its unacknowledged deliveries); near the head this is served from the
// store's per-queue tail cache, so a broadcast to N sessions costs about one
// store read. Each QoS≥1 delivery gets a packet ID from cl.NextPacketID, is
// put in mochi's in-flight map (so mochi's PUBACK/PUBREC/PUBREL/PUBCOMP
// handling works unchanged) and written with cl.WritePacket.
// OnPacketProcessed maps the client's PUBACK/PUBCOMP back to (queue, offset)
// and calls store.Ack, which advances the cursor over the leading run of
// acknowledged messages only, and pumps more. QoS0 deliveries are acked when
// written. QoS0 publishes are not stored; they are written directly to the
// online persistent sessions that match (a second mochi TopicsIndex holds
// their subscriptions).
//
// On disconnect the session's store-driven entries are removed from mochi's
// in-flight map and the session is marked disconnected (store.Disconnect).
// On reconnect it resumes from its cursors: unacknowledged messages are sent
// again with DUP=1 (the hook remembers, per session and queue, the highest
// offset it pushed; after a node restart that memory is gone and such
// redeliveries carry DUP=0), acknowledged ones never.
//
// # Expiry and wills
//
// The expiry loop (Options.ExpiryInterval) calls store.ExpireSessions:
// expired sessions are deleted (and dropped from mochi's client list), due
// wills are stored like any publish and handed to mochi's fan-out through
// an inline client. Wills with a delay (MQTT 5) of persistent sessions are
// kept in the session record and taken away from mochi (whose delayed wills
// live in memory), so they survive restarts; a normal DISCONNECT discards
// them, a reconnect replaces them. Immediate wills stay with mochi. At Init,
// sessions recorded as connected (the node stopped or crashed under them)
// are marked disconnected (store.DisconnectAll), so they expire and fire
// their wills.
//
// # Clean sessions
//
// Untouched: mochi's in-memory fan-out and in-flight handling (the fast
// path); only their QoS≥1 publishes are appended to the store.
//
// # Cells
//
// When the store is shared by the nodes of a cell (store.Cell: the
// JetStream backend), the hook relays QoS 0 publishes to the other nodes,
// applies their retained changes to mochi's retained index, disconnects a
// session another node took over (0x8E), and keeps every will of a
// persistent session in its record (cell.go). A store failure while a
// client connects closes the connection rather than replacing its session.
//
// # Known limits
//
//   - A message matching several subscriptions of one persistent session is
//     delivered once, through the smallest matching filter that covers it
//     (store.Subscription.Since), with the highest QoS and all subscription
//     identifiers. If that subscription is removed while such messages are
//     pending, they are not delivered through the remaining ones.
//   - Read ACLs are checked by mochi at SUBSCRIBE only: store-driven
//     deliveries do not re-run OnACLCheck per message (mochi does not expose
//     its hook chain); tenant isolation comes from the gateway's mount prefix.
//   - NoLocal is not applied to stored (QoS≥1) deliveries: stored messages
//     do not record their publisher.
//   - A message published while a SUBSCRIBE is being processed may be
//     delivered twice to that session (mochi's index and the store overlap
//     for an instant), never lost.
//   - A v5 session with clean start=0 and expiry 0 discards the stored
//     session at connect instead of resuming it for the connection.
//   - Outbound topic aliases are not used for store-driven deliveries.
package sessions
