package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/aeriemq/aerie/sdk"
)

// cli holds one invocation's streams, environment and global flags.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string

	url, apiKey, org, context string
	output                    string
	wait                      time.Duration
}

func newRoot(c *cli) *cobra.Command {
	root := &cobra.Command{
		Use:           "aeriectl",
		Short:         "Manage Aerie (MQTT cloud) instances, credentials and ACLs; plan/apply a declarative file",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&c.url, "url", "", "API URL (default: $AERIE_URL, then the current context)")
	pf.StringVar(&c.apiKey, "api-key", "", "API key (default: $AERIE_API_KEY, then the current context)")
	pf.StringVar(&c.org, "org", "", "org ID (default: $AERIE_ORG, the context's, or the only org the key sees)")
	pf.StringVar(&c.context, "context", "", "use this saved context instead of the current one")
	pf.StringVarP(&c.output, "output", "o", "table", "output format: table, json or yaml")
	pf.DurationVar(&c.wait, "wait", 30*time.Second, "ask changes to return once devices see them (Prefer: wait); 0 disables")
	root.AddCommand(c.loginCmd(), c.configCmd(), c.listCmd("list"), c.listCmd("get"), c.createCmd(), c.deleteCmd(), c.planCmd(), c.applyCmd())
	return root
}

// connect returns an SDK client and the org ID.
func (c *cli) connect(ctx context.Context) (*sdk.API, string, error) {
	url, key, org := c.url, c.apiKey, c.org
	if url == "" {
		url = c.getenv("AERIE_URL")
	}
	if key == "" {
		key = c.getenv("AERIE_API_KEY")
	}
	if org == "" {
		org = c.getenv("AERIE_ORG")
	}
	if url == "" || key == "" {
		_, p, err := c.profile()
		if err != nil {
			return nil, "", err
		}
		name := c.context
		if name == "" {
			name = p.Current
		}
		if ctxt := p.Contexts[name]; ctxt != nil {
			if url == "" {
				url = ctxt.URL
			}
			if key == "" {
				key = ctxt.APIKey
			}
			if org == "" {
				org = ctxt.OrgID
			}
		}
	}
	if url == "" || key == "" {
		return nil, "", errors.New("not logged in: run aeriectl login, or set AERIE_URL and AERIE_API_KEY")
	}
	api, err := sdk.New(ctx, sdk.Options{BaseURL: url, APIKey: key, Wait: c.wait, UserAgent: "aeriectl"})
	if err != nil {
		return nil, "", err
	}
	if org == "" {
		if org, err = onlyOrg(ctx, api); err != nil {
			return nil, "", err
		}
	}
	return api, org, nil
}

func onlyOrg(ctx context.Context, api *sdk.API) (string, error) {
	r, err := api.ListOrgsWithResponse(ctx, nil)
	if err := sdk.Check(r, err); err != nil {
		return "", fmt.Errorf("list orgs: %w", err)
	}
	var out struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		return "", fmt.Errorf("list orgs: %w", err)
	}
	if len(out.Data) != 1 {
		return "", fmt.Errorf("the key sees %d orgs: pass --org", len(out.Data))
	}
	return out.Data[0].ID, nil
}

// print writes rows (JSON-tagged structs) as a table of cols, JSON or YAML.
func (c *cli) print(v any, cols []string) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	switch c.output {
	case "json":
		var out bytes.Buffer
		if err := json.Indent(&out, b, "", "  "); err != nil {
			return err
		}
		out.WriteByte('\n')
		_, err := c.stdout.Write(out.Bytes())
		return err
	case "yaml":
		var x any
		if err := json.Unmarshal(b, &x); err != nil {
			return err
		}
		y, err := yaml.Marshal(x)
		if err != nil {
			return err
		}
		_, err = c.stdout.Write(y)
		return err
	case "table", "":
	default:
		return fmt.Errorf("-o %s: use table, json or yaml", c.output)
	}
	var rows []map[string]any
	if err := json.Unmarshal(b, &rows); err != nil {
		var one map[string]any
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		rows = []map[string]any{one}
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(cols, "\t")))
	for _, r := range rows {
		vals := make([]string, len(cols))
		for i, col := range cols {
			switch x := r[col].(type) {
			case nil:
				vals[i] = "-"
			case string:
				vals[i] = x
			default:
				j, _ := json.Marshal(x)
				vals[i] = string(j)
			}
		}
		fmt.Fprintln(tw, strings.Join(vals, "\t"))
	}
	return tw.Flush()
}

// instanceID resolves --instance (a name or an ID).
func instanceID(ctx context.Context, api *sdk.API, org, ref string) (string, error) {
	if ref == "" {
		return "", errors.New("--instance is required")
	}
	name := ref
	r, err := api.ListInstancesWithResponse(ctx, org, &sdk.ListInstancesParams{Name: &name})
	if err := sdk.Check(r, err); err != nil {
		return "", err
	}
	if len(r.JSON200.Data) == 1 {
		return r.JSON200.Data[0].Id, nil
	}
	g, err := api.GetInstanceWithResponse(ctx, org, ref)
	if err := sdk.Check(g, err); err != nil {
		return "", fmt.Errorf("instance %q: %w", ref, err)
	}
	return g.JSON200.Id, nil
}
