package api

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/tenancy"
)

// errNoFeed: this process has no node feed (the API runs without nodes).
var errNoFeed = fmt.Errorf("%w: this control plane serves no data-plane nodes", tenancy.ErrNodeUnavailable)

type publishJSON struct {
	ID          string    `json:"id"`
	InstanceID  string    `json:"instance_id"`
	Topic       string    `json:"topic"`
	QoS         int       `json:"qos"`
	Retain      bool      `json:"retain"`
	Bytes       int       `json:"bytes"`
	PublishedAt time.Time `json:"published_at"`
}

// publish is POST /v1/orgs/{org_id}/instances/{instance_id}/publish: a
// tenant's server publishes one message into its instance. It answers once
// the instance's node has published it (or refused it, with the reason).
func (a *API) publish(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Topic           string  `json:"topic"`
		Payload         *string `json:"payload" aerie:"binary"`
		PayloadEncoding string  `json:"payload_encoding"`
		QoS             *int    `json:"qos"`
		Retain          bool    `json:"retain"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	req := tenancy.PublishRequest{Topic: in.Topic, Retain: in.Retain}
	if in.QoS != nil {
		req.QoS = *in.QoS
	}
	var fields []tenancy.FieldError
	switch {
	case in.Payload == nil:
		fields = append(fields, tenancy.FieldError{Field: "payload", Message: "is required (it may be empty)"})
	case in.PayloadEncoding == "" || in.PayloadEncoding == "plain":
		req.Payload = []byte(*in.Payload)
	case in.PayloadEncoding == "base64":
		b, err := base64.StdEncoding.DecodeString(*in.Payload)
		if err != nil {
			fields = append(fields, tenancy.FieldError{Field: "payload", Message: "is not valid base64 (RFC 4648, with padding)"})
		}
		req.Payload = b
	default:
		fields = append(fields, tenancy.FieldError{Field: "payload_encoding", Message: `must be "plain" or "base64"`})
	}
	if len(fields) > 0 {
		a.WriteError(w, r, &tenancy.ValidationError{Fields: fields})
		return
	}
	if a.feed == nil {
		a.WriteError(w, r, errNoFeed)
		return
	}
	out, err := a.feed.Publish(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), req)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, publishJSON{ID: out.ID, InstanceID: out.InstanceID, Topic: out.Topic, QoS: out.QoS, Retain: out.Retain,
		Bytes: out.Bytes, PublishedAt: out.PublishedAt})
}

// publishResult is POST /internal/v1/nodes/{node_id}/publishes/{id}/result:
// the node's answer to a publish it was streamed.
func (a *API) publishResult(w http.ResponseWriter, r *http.Request) {
	var res config.PublishResult
	if err := DecodeJSON(w, r, &res); err != nil {
		a.WriteError(w, r, err)
		return
	}
	if res.ID != chi.URLParam(r, "publish_id") {
		a.WriteError(w, r, &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "id", Message: "must match the publish in the path"}}})
		return
	}
	if err := a.svc.CompletePublish(r.Context(), chi.URLParam(r, "node_id"), res); err != nil {
		if errors.Is(err, tenancy.ErrNotFound) {
			err = fmt.Errorf("%w: no publish %s was sent to this node", tenancy.ErrNotFound, res.ID)
		}
		a.WriteError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
