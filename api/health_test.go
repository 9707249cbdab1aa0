package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestReadyz(t *testing.T) {
	ok := ReadyCheck{Name: "postgres", Fn: func(context.Context) error { return nil }}
	down := ReadyCheck{Name: "mqtt", Fn: func(context.Context) error { return errors.New("listeners not serving") }}
	cases := []struct {
		name       string
		checks     []ReadyCheck
		wantStatus int
		wantFailed []string
	}{
		{"all checks pass", []ReadyCheck{ok}, http.StatusOK, nil},
		{"one check fails", []ReadyCheck{ok, down}, http.StatusServiceUnavailable, []string{"mqtt"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Readyz(c.checks)(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != c.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, c.wantStatus)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			var body struct {
				Status string `json:"status"`
				Failed []struct {
					Check  string `json:"check"`
					Reason string `json:"reason"`
				} `json:"failed"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if len(body.Failed) != len(c.wantFailed) {
				t.Fatalf("failed = %+v, want %v", body.Failed, c.wantFailed)
			}
			for i, f := range body.Failed {
				if f.Check != c.wantFailed[i] || f.Reason == "" {
					t.Errorf("failure %d = %+v", i, f)
				}
			}
		})
	}
}
