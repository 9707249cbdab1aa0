// Package nodelink is the link between the control plane and its
// data-plane nodes, and the only code on either side that knows its wire
// format: the wire types, their JSON encoding, the endpoints, how each side
// authenticates the other, and both transports (in-process for `aerie
// serve`, HTTP for the split topology).
//
// The link carries three flows:
//
//   - Config, control plane → node: a revisioned stream of Events (a
//     Snapshot, then the changes in revision order, with heartbeats), served
//     by the Feed from the control plane's outbox (a Store). The node
//     acknowledges what it applied (Ack), which doubles as its heartbeat.
//   - Usage, node → control plane: idempotent UsageReports (a node's
//     (node, seq) is counted once).
//   - Requests, control plane → node: named operations (Op*) answered by the
//     node that serves an instance: live clients and sessions, consumer
//     groups and HTTP publish. The payload of a message never passes through
//     Postgres.
//
// A node sees the first two through Source (LocalSource in process,
// HTTPSource over HTTP) and serves the third with a Server (reached with
// Local in process, HTTP over HTTP). The control plane serves the first two
// with Hub (Handler over HTTP) and calls the third with Nodes.
//
// # HTTP, control plane side
//
//	GET  /internal/v1/nodes/{node_id}/watch?since=REV   newline-delimited JSON Events
//	POST /internal/v1/nodes/{node_id}/ack               Ack → 204
//	POST /internal/v1/nodes/{node_id}/usage             UsageReport → 200 {"seq", "duplicate"}
//
// each with Authorization: Bearer <node token> (aen_<node>_<secret>; the
// control plane keeps only the SHA-256 of the secret). When since is 0, or
// older than the oldest change the control plane still keeps, the stream
// starts with a KindSnapshot; otherwise with the changes after since. Every
// change bumps one global revision in the same database transaction, so a
// node sees gaps (other nodes' changes) but never a change out of order. A
// KindHeartbeat line carries the current revision when there is nothing
// else to say. A usage report naming an instance not placed on the node is
// refused whole (403).
//
// # HTTP, node side
//
//	POST {node api url}/internal/v1/node/{op}
//	Authorization: Bearer <Secret(SHA-256 of the node token's secret)>
//	{"op": "...", "instance_id": "...", "body": {...}}
//
// The secret is an HMAC-SHA256 derived from what both sides already hold,
// so no new secret is provisioned. Callers check tenancy (org → instance)
// before calling: the node trusts the instance ID.
//
// Secrets never travel: credentials carry the SHA-256 of their secret, and
// device tokens are verified with the instance's public keys.
package nodelink
