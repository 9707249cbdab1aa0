package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/forward"
	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/tenancy"
)

// ruleSecrets fetches forwarding rules' secrets for the node: in process
// (serve) from the tenancy service, else from the control plane over HTTP
// with the node token. Set before the forwarder runs.
type ruleSecrets struct {
	svc                  *tenancy.Service
	nodeID, cpURL, token string
	client               *http.Client
}

func (r *ruleSecrets) fetch(ctx context.Context, _, ruleID string) ([]byte, error) {
	if r.svc != nil {
		return r.svc.RuleSecretForNode(ctx, r.nodeID, ruleID)
	}
	u := strings.TrimSuffix(r.cpURL, "/") + "/internal/v1/nodes/" + url.PathEscape(r.nodeID) + "/rules/" + url.PathEscape(ruleID) + "/secret"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("rule secret request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("rule secret: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("rule secret: control plane answered %d", resp.StatusCode)
	}
	var out struct{ Secret string }
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&out); err != nil || out.Secret == "" {
		return nil, fmt.Errorf("rule secret: bad answer")
	}
	return []byte(out.Secret), nil
}

// newForwarder builds the node's forwarding rules service from the flags.
func newForwarder(cfg *config, log *slog.Logger, st *store.Store, state *configsync.State) (*forward.Service, *ruleSecrets, error) {
	secrets := &ruleSecrets{client: &http.Client{Timeout: 10 * time.Second}}
	o := forward.Options{Store: st, State: state, Log: log.With("component", "forward"), Secret: secrets.fetch}
	if cfg.ForwardCAFile != "" {
		pem, err := os.ReadFile(cfg.ForwardCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--forward-ca-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("%w: --forward-ca-file %s holds no PEM certificate", errUsage, cfg.ForwardCAFile)
		}
		o.Sinks.Transport.RootCAs = pool
	}
	if cfg.ForwardAllowPrivate != "" {
		on, err := strconv.ParseBool(cfg.ForwardAllowPrivate)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: --forward-allow-private %q: want true or false", errUsage, cfg.ForwardAllowPrivate)
		}
		o.Sinks.Transport.AllowPrivate = on
	}
	return forward.New(o), secrets, nil
}
