package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"

	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/forward"
	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/nodelink"
)

// ruleSecrets fetches forwarding rules' secrets for the node over the node
// link (in process in `aerie serve`, HTTP with the node token in `aerie
// dataplane`). The source is set once the node follows its control plane;
// until then a rule waits (and retries) for its secret.
type ruleSecrets struct {
	mu  sync.Mutex
	src nodelink.Source
}

func (r *ruleSecrets) set(src nodelink.Source) {
	r.mu.Lock()
	r.src = src
	r.mu.Unlock()
}

func (r *ruleSecrets) fetch(ctx context.Context, _, ruleID string) ([]byte, error) {
	r.mu.Lock()
	src := r.src
	r.mu.Unlock()
	if src == nil {
		return nil, errors.New("rule secret: not following a control plane yet")
	}
	return src.RuleSecret(ctx, ruleID)
}

// newForwarder builds the node's forwarding rules service from the flags.
func newForwarder(cfg *config, log *slog.Logger, st forward.Store, leases store.Leases, state *configsync.State) (*forward.Service, *ruleSecrets, error) {
	secrets := &ruleSecrets{}
	o := forward.Options{Store: st, Leases: leases, State: state, Log: log.With("component", "forward"), Secret: secrets.fetch}
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
