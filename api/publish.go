package api

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

// errNoNodeLink: this process cannot reach data-plane nodes.
var errNoNodeLink = fmt.Errorf("%w: this control plane reaches no data-plane nodes", tenancy.ErrNodeUnavailable)

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
	out, err := a.publishOnNode(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), req)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, publishJSON{ID: out.ID, InstanceID: out.InstanceID, Topic: out.Topic, QoS: out.QoS, Retain: out.Retain,
		Bytes: out.Bytes, PublishedAt: out.PublishedAt})
}

// PublishTimeout bounds the wait for the node's answer to an HTTP publish;
// past it the outcome is unknown (504).
const PublishTimeout = 10 * time.Second

// publishOnNode checks the publish against the org's instance (tenancy)
// and asks the node serving it to publish (the node admits it like a
// device's: quotas, topic policy, usage). The payload goes straight to the
// node; it is never stored by the control plane.
func (a *API) publishOnNode(ctx context.Context, orgID, instanceID string, req tenancy.PublishRequest) (tenancy.Published, error) {
	id, nodeID, err := a.svc.PublishTarget(ctx, orgID, instanceID, req)
	if err != nil {
		return tenancy.Published{}, err
	}
	if a.node.Caller == nil {
		return tenancy.Published{}, errNoNodeLink
	}
	pctx, cancel := context.WithTimeout(ctx, PublishTimeout)
	defer cancel()
	payload := req.Payload
	if payload == nil {
		payload = []byte{}
	}
	res, err := a.node.Publish(pctx, nodeID, nodelink.Publish{ID: id, InstanceID: instanceID, Topic: req.Topic, Payload: payload,
		QoS: byte(req.QoS), Retain: req.Retain})
	if err != nil {
		if ctx.Err() == nil && pctx.Err() != nil {
			err = fmt.Errorf("%w: no answer within %s", nodelink.ErrNoAnswer, PublishTimeout)
		}
		return tenancy.Published{}, nodeError(err, nodeID, "topic")
	}
	if err := publishRefusal(res); err != nil {
		return tenancy.Published{}, err
	}
	return tenancy.Published{ID: id, InstanceID: instanceID, Topic: req.Topic, QoS: req.QoS, Retain: req.Retain, Bytes: len(req.Payload),
		PublishedAt: a.now().UTC()}, nil
}

// publishRefusal maps a node's refusal of a publish to the service's errors.
func publishRefusal(res nodelink.PublishResult) error {
	switch res.Code {
	case nodelink.PublishOK:
		return nil
	case nodelink.PublishInvalidTopic:
		return &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "topic", Message: res.Message}}}
	case nodelink.PublishTooLarge:
		return fmt.Errorf("%w: %s", tenancy.ErrPayloadTooLarge, res.Message)
	case nodelink.PublishRateLimited:
		return fmt.Errorf("%w: %s", tenancy.ErrRateLimited, res.Message)
	case nodelink.PublishRetainedFull:
		return fmt.Errorf("%w: %s", tenancy.ErrQuotaExceeded, res.Message)
	case nodelink.PublishUnavailable:
		return fmt.Errorf("%w: %s", tenancy.ErrInstanceUnavailable, res.Message)
	}
	return fmt.Errorf("publish failed on the node (%s): %s", res.Code, res.Message)
}
