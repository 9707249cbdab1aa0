package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

// The representations of a topic poll (Accept).
const (
	mediaJSON        = "application/json"
	mediaEventStream = "text/event-stream"
	mediaOctetStream = "application/octet-stream"
)

// DefaultHeartbeat is the interval of an event stream's heartbeats when
// the poll names no wait.
const DefaultHeartbeat = 15 * time.Second

// negotiatePoll picks the representation of a poll from Accept: the
// supported media type with the highest q (the first listed on a tie);
// JSON when none is named.
func negotiatePoll(accept string) string {
	best, bestQ := mediaJSON, 0.0
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if q, err = strconv.ParseFloat(v, 64); err != nil {
				continue
			}
		}
		switch mt {
		case mediaJSON, mediaEventStream, mediaOctetStream:
			if q > bestQ {
				best, bestQ = mt, q
			}
		}
	}
	return best
}

// rawTopicMessage answers one message as its raw payload, its metadata in
// headers (Aerie-Topic percent-encoded); 204 when none came within wait.
func (a *API) rawTopicMessage(w http.ResponseWriter, r *http.Request, req nodelink.PollRequest) {
	if v := r.URL.Query().Get("limit"); v != "" && v != "1" {
		a.WriteError(w, r, &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "limit", Message: "must be 1 with Accept: application/octet-stream"}}})
		return
	}
	req.Limit = 1
	tgt, err := a.topicNode(r.Context(), r)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	out, err := a.pollNode(r.Context(), tgt, req)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Aerie-Committed", strconv.FormatUint(out.Committed, 10))
	if len(out.Messages) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	m := out.Messages[0]
	h.Set("Content-Type", mediaOctetStream)
	h.Set("Content-Length", strconv.Itoa(len(m.Payload)))
	h.Set("Aerie-Topic", strings.ReplaceAll(url.PathEscape(m.Topic), "%2F", "/"))
	h.Set("Aerie-Offset", strconv.FormatUint(m.Offset, 10))
	h.Set("Aerie-Qos", strconv.Itoa(int(m.QoS)))
	h.Set("Aerie-Retain", strconv.FormatBool(m.Retain))
	h.Set("Aerie-Published-At", m.PublishedAt.UTC().Format(time.RFC3339Nano))
	h.Set("Aerie-Redelivered", strconv.FormatBool(m.Redelivered))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(m.Payload)
}

// streamTopic serves a consumer group as Server-Sent Events: one event a
// message (id: its offset, data: its JSON), a comment line as heartbeat
// every wait seconds without messages. With commit=auto (the default) each
// batch is committed once written and flushed to the client (sent with the
// stream's next poll, or on its own when the client has gone); with
// commit=explicit the client acknowledges through …/messages/ack and what
// it does not acknowledge comes again after its lease. A batch whose
// write fails is never committed. The stream ends when the client goes.
func (a *API) streamTopic(w http.ResponseWriter, r *http.Request, req nodelink.PollRequest) {
	ctx := r.Context()
	auto := true
	switch r.URL.Query().Get("commit") {
	case "", "auto":
	case "explicit":
		auto = false
	default:
		a.WriteError(w, r, &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "commit", Message: "must be auto or explicit"}}})
		return
	}
	heartbeat := time.Duration(req.WaitMillis) * time.Millisecond
	if heartbeat <= 0 {
		heartbeat = DefaultHeartbeat
	}
	tgt, err := a.topicNode(ctx, r)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	req.TopicID = tgt.Topic.ID
	// The first poll does not wait, so a bad group or a node that is
	// unavailable is answered as a problem before the stream starts.
	first := req
	first.WaitMillis = 0
	batch, err := a.pollNode(ctx, tgt, first)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", mediaEventStream)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	req.WaitMillis = heartbeat.Milliseconds()
	for {
		sent, err := writeEvents(w, batch.Messages)
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return // the client is gone: this batch stays uncommitted
		}
		req.AckOffsets = nil
		if auto {
			req.AckOffsets = sent
		}
		batch, err = a.pollNode(ctx, tgt, req)
		if err != nil {
			if ctx.Err() != nil {
				a.commitOnLeave(ctx, tgt, req)
				return
			}
			p := ProblemFor(err)
			b, _ := json.Marshal(p)
			_, _ = fmt.Fprintf(w, "event: error\ndata: %s\n\n", b)
			_ = rc.Flush()
			return
		}
	}
}

// writeEvents writes one event a message, or a heartbeat comment when
// there is none; it returns the offsets written.
func writeEvents(w http.ResponseWriter, msgs []nodelink.Message) ([]uint64, error) {
	if len(msgs) == 0 {
		_, err := fmt.Fprint(w, ": heartbeat\n\n")
		return nil, err
	}
	offs := make([]uint64, 0, len(msgs))
	for _, m := range msgs {
		b, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("encode message: %w", err)
		}
		if _, err := fmt.Fprintf(w, "id: %d\nevent: message\ndata: %s\n\n", m.Offset, b); err != nil {
			return nil, err
		}
		offs = append(offs, m.Offset)
	}
	return offs, nil
}

// commitOnLeave commits the last batch written when the client left while
// the poll carrying its commit was under way (acknowledging twice is
// harmless).
func (a *API) commitOnLeave(ctx context.Context, tgt tenancy.TopicTarget, req nodelink.PollRequest) {
	if len(req.AckOffsets) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := a.node.Ack(ctx, tgt.NodeID, tgt.Topic.InstanceID, nodelink.AckRequest{TopicID: tgt.Topic.ID, Group: req.Group, Offsets: req.AckOffsets})
	if err != nil && !errors.Is(err, context.Canceled) {
		a.log.WarnContext(ctx, "event stream: commit on leave failed", "error", err)
	}
}
