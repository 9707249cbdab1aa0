package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aeriemq/aerie/migrations"
	"github.com/aeriemq/aerie/tenancy"
)

// runNode implements `aerie node create NAME` and `aerie node list`.
func runNode(ctx context.Context, args []string, stdout io.Writer, stderr *os.File) error {
	if len(args) == 0 || (args[0] != "create" && args[0] != "list") {
		return fmt.Errorf("%w: aerie node create NAME | aerie node list", errUsage)
	}
	action := args[0]
	cfg, rest, err := parseConfig("node", args[1:], stderr)
	if err != nil {
		return err
	}
	if action == "create" && len(rest) != 1 {
		return fmt.Errorf("%w: aerie node create NAME", errUsage)
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	if cfg.DatabaseURL == "" {
		if err := prepareDataDir(cfg.DataDir); err != nil {
			return err
		}
		unlock, err := lockDataDir(cfg.DataDir)
		if err != nil {
			return err
		}
		defer unlock()
	}
	pool, stop, err := openDatabase(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stop()
	r, err := migrations.New(pool, nil)
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := r.Up(ctx); err != nil {
		return err
	}
	svc := tenancy.NewService(pool, log)
	if action == "create" {
		n, tok, err := svc.CreateNode(ctx, rest[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "node %s (%s) registered. Its token, shown once:\n  AERIE_NODE_TOKEN=%s\nStart it with:\n  aerie dataplane --control-plane URL --node-token %s\n", n.Name, n.ID, tok, tok)
		return nil
	}
	ns, err := svc.ListNodes(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%-14s %-20s %9s %11s %10s  %s\n", "ID", "NAME", "INSTANCES", "CONNECTIONS", "REVISION", "LAST SEEN")
	for _, n := range ns {
		seen := "never"
		if n.LastSeenAt != nil {
			seen = n.LastSeenAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(stdout, "%-14s %-20s %9d %11d %10d  %s\n", n.ID, n.Name, n.Instances, n.Connections, n.AppliedRevision, seen)
	}
	return nil
}
