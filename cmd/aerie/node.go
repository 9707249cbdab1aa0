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

// runNode implements `aerie node create NAME [--cell CELL]` and `aerie node
// list`.
func runNode(ctx context.Context, args []string, stdout io.Writer, stderr *os.File) error {
	if len(args) == 0 || (args[0] != "create" && args[0] != "list") {
		return fmt.Errorf("%w: aerie node create NAME [--cell CELL] | aerie node list", errUsage)
	}
	action := args[0]
	return withAdminService(ctx, "node", args[1:], stderr, func(cfg *config, rest []string, svc *tenancy.Service) error {
		if action == "create" {
			if len(rest) != 1 {
				return fmt.Errorf("%w: aerie node create NAME [--cell CELL]", errUsage)
			}
			n, tok, err := svc.CreateNodeInCell(ctx, rest[0], cfg.Cell)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "node %s (%s) registered in cell %s. Its token, shown once:\n  AERIE_NODE_TOKEN=%s\nStart it with:\n  aerie dataplane --control-plane URL --cell %s --node-token %s\n",
				n.Name, n.ID, n.Cell, tok, n.Cell, tok)
			return nil
		}
		ns, err := svc.ListNodes(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%-14s %-20s %-20s %-6s %9s %11s %10s  %s\n", "ID", "NAME", "CELL", "STATUS", "INSTANCES", "CONNECTIONS", "REVISION", "LAST SEEN")
		for _, n := range ns {
			seen := "never"
			if n.LastSeenAt != nil {
				seen = n.LastSeenAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(stdout, "%-14s %-20s %-20s %-6s %9d %11d %10d  %s\n", n.ID, n.Name, n.Cell, nodeStatus(n.Up), n.Instances, n.Connections, n.AppliedRevision, seen)
		}
		return nil
	})
}

func nodeStatus(up bool) string {
	if up {
		return tenancy.NodeUp
	}
	return tenancy.NodeDown
}

// withAdminService parses the flags of an operator command (sub), opens
// the database (the private cluster under --data-dir when no
// --database-url), migrates it and runs fn with the tenancy service.
func withAdminService(ctx context.Context, sub string, args []string, stderr *os.File, fn func(*config, []string, *tenancy.Service) error) error {
	cfg, rest, err := parseConfig(sub, flagsFirst(args), stderr)
	if err != nil {
		return err
	}
	down, err := nodeDownAfter(cfg)
	if err != nil {
		return err
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
	return fn(cfg, rest, tenancy.NewService(pool, log, tenancy.WithNodeLiveWindow(down)))
}
