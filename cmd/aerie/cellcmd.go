package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/aeriemq/aerie/tenancy"
)

const cellUsage = "aerie cell list | aerie cell set-endpoints CELL [mqtt=HOST:PORT] [mqtts=HOST:PORT] [ws=URL] [wss=URL]"

// runCell implements `aerie cell list` and `aerie cell set-endpoints`.
func runCell(ctx context.Context, args []string, stdout io.Writer, stderr *os.File) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "set-endpoints") {
		return fmt.Errorf("%w: %s", errUsage, cellUsage)
	}
	action := args[0]
	return withAdminService(ctx, "cell", args[1:], stderr, func(_ *config, rest []string, svc *tenancy.Service) error {
		if action == "set-endpoints" {
			return setCellEndpoints(ctx, svc, rest, stdout)
		}
		if len(rest) != 0 {
			return fmt.Errorf("%w: %s", errUsage, cellUsage)
		}
		cs, err := svc.ListCells(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%-20s %5s %8s %-9s %9s  %s\n", "NAME", "NODES", "NODES UP", "STATUS", "INSTANCES", "ENDPOINTS")
		for _, c := range cs {
			fmt.Fprintf(stdout, "%-20s %5d %8d %-9s %9d  %s\n", c.Name, c.Nodes, c.NodesUp, c.Status, c.Instances, formatEndpoints(c.Endpoints))
		}
		return nil
	})
}

func setCellEndpoints(ctx context.Context, svc *tenancy.Service, rest []string, stdout io.Writer) error {
	if len(rest) < 1 {
		return fmt.Errorf("%w: %s", errUsage, cellUsage)
	}
	eps := map[string]string{}
	for _, kv := range rest[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" {
			return fmt.Errorf("%w: %q: want KIND=HOST:PORT (mqtt, mqtts, ws, wss)", errUsage, kv)
		}
		eps[k] = v
	}
	got, err := svc.SetCellEndpoints(ctx, rest[0], eps)
	if err != nil {
		return err
	}
	if len(got) == 0 {
		fmt.Fprintf(stdout, "cell %s: endpoints cleared; its instances show their nodes' own\n", rest[0])
		return nil
	}
	fmt.Fprintf(stdout, "cell %s: its instances show %s\n", rest[0], formatEndpoints(got))
	return nil
}

// formatEndpoints prints kind=URL pairs sorted by kind ("-" for none).
func formatEndpoints(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, " ")
}
