package api

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// ReadyCheck is one readiness condition: Fn returns nil when it holds.
type ReadyCheck struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Healthz answers 200 while the process is alive.
func Healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// Readyz answers 200 when every check passes, otherwise 503 with a JSON body
// naming the failing checks and why.
func Readyz(checks []ReadyCheck) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		type failure struct {
			Check  string `json:"check"`
			Reason string `json:"reason"`
		}
		var failed []failure
		for _, c := range checks {
			if err := c.Fn(ctx); err != nil {
				failed = append(failed, failure{Check: c.Name, Reason: err.Error()})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{"status": "unavailable", "failed": failed})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "ready"})
	}
}
