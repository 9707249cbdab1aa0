package api

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/tenancy"
)

type topicJSON struct {
	ID               string    `json:"id"`
	InstanceID       string    `json:"instance_id"`
	Name             string    `json:"name"`
	Filter           string    `json:"filter"`
	RetentionSeconds int64     `json:"retention_seconds"`
	RetentionBytes   int64     `json:"retention_bytes"`
	MaxQoS           byte      `json:"max_qos"`
	RetainAllowed    bool      `json:"retain_allowed"`
	MaxPayloadBytes  int       `json:"max_payload_bytes"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

func toTopic(t tenancy.Topic) topicJSON {
	return topicJSON{ID: t.ID, InstanceID: t.InstanceID, Name: t.Name, Filter: t.Filter, RetentionSeconds: t.RetentionSeconds,
		RetentionBytes: t.RetentionBytes, MaxQoS: t.MaxQoS, RetainAllowed: t.RetainAllowed, MaxPayloadBytes: t.MaxPayloadBytes,
		CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}
}

type topicInput struct {
	Name             *string `json:"name"`
	Filter           *string `json:"filter"`
	RetentionSeconds *int64  `json:"retention_seconds"`
	RetentionBytes   *int64  `json:"retention_bytes"`
	MaxQoS           *byte   `json:"max_qos"`
	RetainAllowed    *bool   `json:"retain_allowed"`
	MaxPayloadBytes  *int    `json:"max_payload_bytes"`
}

func (in topicInput) patch() tenancy.TopicPatch {
	return tenancy.TopicPatch{Name: in.Name, Filter: in.Filter, RetentionSeconds: in.RetentionSeconds, RetentionBytes: in.RetentionBytes,
		MaxQoS: in.MaxQoS, RetainAllowed: in.RetainAllowed, MaxPayloadBytes: in.MaxPayloadBytes}
}

func (a *API) createTopic(w http.ResponseWriter, r *http.Request) {
	var in topicInput
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	t := tenancy.TopicPolicy{MaxQoS: 2, RetainAllowed: true}
	in.patch().Apply(&t)
	out, err := a.svc.CreateTopic(r.Context(), ActorOf(r), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), t)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	w.Header().Set("Location", r.URL.Path+"/"+out.ID)
	WriteJSON(w, http.StatusCreated, toTopic(out))
}

func (a *API) listTopics(w http.ResponseWriter, r *http.Request) {
	page, err := ParsePage(r)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	list, next, err := a.svc.ListTopics(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), page)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSONWithETag(w, http.StatusOK, NewList(list, next, toTopic))
}

func (a *API) getTopic(w http.ResponseWriter, r *http.Request) {
	t, err := a.svc.GetTopic(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), chi.URLParam(r, "topic_id"))
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSONWithETag(w, http.StatusOK, toTopic(t))
}

func (a *API) patchTopic(w http.ResponseWriter, r *http.Request) {
	var in topicInput
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	out, err := a.svc.UpdateTopic(r.Context(), ActorOf(r), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), chi.URLParam(r, "topic_id"), in.patch())
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, toTopic(out))
}

func (a *API) deleteTopic(w http.ResponseWriter, r *http.Request) {
	if err := a.svc.DeleteTopic(r.Context(), ActorOf(r), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), chi.URLParam(r, "topic_id")); err != nil {
		a.WriteError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type topicSettingsJSON struct {
	StrictTopics bool `json:"strict_topics"`
}

func (a *API) getTopicSettings(w http.ResponseWriter, r *http.Request) {
	on, err := a.svc.StrictTopics(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"))
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSONWithETag(w, http.StatusOK, topicSettingsJSON{StrictTopics: on})
}

func (a *API) putTopicSettings(w http.ResponseWriter, r *http.Request) {
	var in topicSettingsJSON
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	if err := a.svc.SetStrictTopics(r.Context(), ActorOf(r), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "instance_id"), in.StrictTopics); err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, in)
}
