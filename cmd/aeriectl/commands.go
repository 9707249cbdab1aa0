package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
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
		path, err := profilePath(c.getenv)
		if err != nil {
			return nil, "", err
		}
		p, err := loadProfile(path)
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

func (c *cli) loginCmd() *cobra.Command {
	var email, name string
	var passwordStdin bool
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Save a context (URL, API key, org) in the user config dir (mode 0600)",
		Long: "With --api-key the key is saved as is. With --email the password is read from stdin,\n" +
			"and an admin API key named aeriectl-<time> is created for the org and saved.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			url := c.url
			if url == "" {
				url = c.getenv("AERIE_URL")
			}
			if url == "" {
				return errors.New("--url is required")
			}
			key := c.apiKey
			if key == "" && email == "" {
				key = c.getenv("AERIE_API_KEY")
			}
			org := c.org
			switch {
			case key != "":
			case email != "":
				pw := c.getenv("AERIE_PASSWORD")
				if pw == "" || passwordStdin {
					line, err := bufio.NewReader(c.stdin).ReadString('\n')
					if err != nil && !errors.Is(err, io.EOF) {
						return fmt.Errorf("read password: %w", err)
					}
					pw = strings.TrimRight(line, "\r\n")
				}
				api, err := sdk.New(ctx, sdk.Options{BaseURL: url, Email: email, Password: pw, UserAgent: "aeriectl"})
				if err != nil {
					return err
				}
				if org == "" {
					if s := api.Session(); s != nil && s.Org != nil {
						org = s.Org.Id
					} else if org, err = onlyOrg(ctx, api); err != nil {
						return err
					}
				}
				body := sdk.CreateAPIKeyJSONRequestBody{Name: "aeriectl-" + time.Now().UTC().Format("20060102-150405"), Scopes: []sdk.Scope{sdk.ScopeAdmin}}
				r, err := api.CreateAPIKeyWithResponse(ctx, org, nil, body)
				if err := sdk.Check(r, err); err != nil {
					return fmt.Errorf("create api key: %w", err)
				}
				key = r.JSON201.Secret
			default:
				return errors.New("pass --api-key (or $AERIE_API_KEY) or --email")
			}
			api, err := sdk.New(ctx, sdk.Options{BaseURL: url, APIKey: key, UserAgent: "aeriectl"})
			if err != nil {
				return err
			}
			if org == "" {
				if org, err = onlyOrg(ctx, api); err != nil {
					return err
				}
			}
			path, err := profilePath(c.getenv)
			if err != nil {
				return err
			}
			p, err := loadProfile(path)
			if err != nil {
				return err
			}
			if name == "" {
				name = "default"
			}
			p.Contexts[name] = &Context{URL: url, APIKey: key, OrgID: org}
			p.Current = name
			if err := p.save(path); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "Logged in: context %q (org %s) saved in %s\n", name, org, path)
			return nil
		},
	}
	cmd.Flags().StringVar(&email, "email", "", "log in with this email (password from $AERIE_PASSWORD or stdin)")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from stdin")
	cmd.Flags().StringVar(&name, "name", "", "context name (default \"default\")")
	return cmd
}

func (c *cli) configCmd() *cobra.Command {
	cfg := &cobra.Command{Use: "config", Short: "Saved contexts"}
	cfg.AddCommand(&cobra.Command{
		Use:   "use-context NAME",
		Short: "Make a saved context the current one",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			path, err := profilePath(c.getenv)
			if err != nil {
				return err
			}
			p, err := loadProfile(path)
			if err != nil {
				return err
			}
			if p.Contexts[args[0]] == nil {
				return fmt.Errorf("no context %q (have: %s)", args[0], strings.Join(p.names(), ", "))
			}
			p.Current = args[0]
			if err := p.save(path); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "Switched to context %q.\n", args[0])
			return nil
		},
	}, &cobra.Command{
		Use:   "get-contexts",
		Short: "List saved contexts (* marks the current one)",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			path, err := profilePath(c.getenv)
			if err != nil {
				return err
			}
			p, err := loadProfile(path)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CURRENT\tNAME\tURL\tORG")
			for _, n := range p.names() {
				cur := ""
				if n == p.Current {
					cur = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cur, n, p.Contexts[n].URL, p.Contexts[n].OrgID)
			}
			return tw.Flush()
		},
	})
	return cfg
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

// resource describes one kind for list/get/create/delete.
type resource struct {
	names      []string
	cols       []string
	inInstance bool
}

var resources = []resource{
	{names: []string{"instances", "instance", "inst"}, cols: []string{"id", "name", "status", "plan", "node_id"}},
	{names: []string{"credentials", "credential", "cred"}, cols: []string{"id", "username", "mqtt_username", "enabled", "password_source"}, inInstance: true},
	{names: []string{"acl-rules", "acl-rule", "acl"}, cols: []string{"position", "id", "effect", "action", "filter", "credential_id"}, inInstance: true},
	{names: []string{"api-keys", "api-key", "key"}, cols: []string{"id", "name", "prefix", "scopes", "expires_at"}},
	{names: []string{"members", "member"}, cols: []string{"user_id", "email", "role"}},
	{names: []string{"plans", "plan"}, cols: []string{"id", "name", "price_cents"}},
}

func findResource(name string) (resource, error) {
	for _, r := range resources {
		for _, n := range r.names {
			if n == name {
				return r, nil
			}
		}
	}
	return resource{}, fmt.Errorf("unknown resource %q (instances, credentials, acl-rules, api-keys, members, plans)", name)
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

func (c *cli) listCmd(verb string) *cobra.Command {
	var inst string
	cmd := &cobra.Command{
		Use:   verb + " RESOURCE [NAME]",
		Short: strings.ToUpper(verb[:1]) + verb[1:] + " instances, credentials, acl-rules, api-keys, members or plans (NAME: one by name)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := findResource(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			api, org, err := c.connect(ctx)
			if err != nil {
				return err
			}
			var name *string
			if len(args) == 2 {
				name = &args[1]
			}
			var iid string
			if res.inInstance {
				if iid, err = instanceID(ctx, api, org, inst); err != nil {
					return err
				}
			}
			var data any
			switch res.names[0] {
			case "instances":
				data, err = collectRaw(ctx, func(cur *string) (rawPage, error) {
					r, err := api.ListInstancesWithResponse(ctx, org, &sdk.ListInstancesParams{Cursor: cur, Name: name})
					return rawPage{bodyOr(r)}, sdk.Check(r, err)
				})
			case "credentials":
				data, err = collectRaw(ctx, func(cur *string) (rawPage, error) {
					r, err := api.ListCredentialsWithResponse(ctx, org, iid, &sdk.ListCredentialsParams{Cursor: cur, Name: name})
					return rawPage{bodyOr(r)}, sdk.Check(r, err)
				})
			case "acl-rules":
				data, err = collectRaw(ctx, func(cur *string) (rawPage, error) {
					r, err := api.ListACLRulesWithResponse(ctx, org, iid, &sdk.ListACLRulesParams{Cursor: cur})
					return rawPage{bodyOr(r)}, sdk.Check(r, err)
				})
			case "api-keys":
				data, err = collectRaw(ctx, func(cur *string) (rawPage, error) {
					r, err := api.ListAPIKeysWithResponse(ctx, org, &sdk.ListAPIKeysParams{Cursor: cur, Name: name})
					return rawPage{bodyOr(r)}, sdk.Check(r, err)
				})
			case "members":
				data, err = collectRaw(ctx, func(cur *string) (rawPage, error) {
					r, err := api.ListMembersWithResponse(ctx, org, &sdk.ListMembersParams{Cursor: cur})
					return rawPage{bodyOr(r)}, sdk.Check(r, err)
				})
			case "plans":
				data, err = collectRaw(ctx, func(cur *string) (rawPage, error) {
					r, err := api.ListPlansWithResponse(ctx)
					return rawPage{bodyOr(r)}, sdk.Check(r, err)
				})
			}
			if err != nil {
				return err
			}
			if name != nil {
				if l, _ := data.([]any); len(l) == 0 {
					return fmt.Errorf("%s %q: not found", res.names[1], *name)
				} else if verb == "get" {
					data = l[0]
				}
			}
			return c.print(data, res.cols)
		},
	}
	cmd.Flags().StringVar(&inst, "instance", "", "the instance (name or ID) of credentials and acl-rules")
	return cmd
}

type rawPage struct{ body []byte }

func bodyOr(r interface{ StatusCode() int }) []byte { return sdk.Body(r) }

// collectRaw follows next_cursor and returns every item as JSON values.
func collectRaw(ctx context.Context, page func(cursor *string) (rawPage, error)) ([]any, error) {
	var out []any
	var cur *string
	for ctx.Err() == nil {
		p, err := page(cur)
		if err != nil {
			return nil, err
		}
		var env struct {
			Data       []any   `json:"data"`
			NextCursor *string `json:"next_cursor"`
		}
		if err := json.Unmarshal(p.body, &env); err != nil {
			return nil, fmt.Errorf("decode list: %w", err)
		}
		out = append(out, env.Data...)
		if env.NextCursor == nil || *env.NextCursor == "" {
			return out, nil
		}
		cur = env.NextCursor
	}
	return nil, ctx.Err()
}

func (c *cli) createCmd() *cobra.Command {
	var inst, effect, action, filter, credential, passwordEnv, clientPattern string
	var scopes []string
	var position int
	var anonymous bool
	cmd := &cobra.Command{
		Use:   "create RESOURCE [NAME]",
		Short: "Create an instance NAME, a credential USERNAME, an api-key NAME or an acl-rule",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := findResource(args[0])
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 2 {
				name = args[1]
			}
			ctx := cmd.Context()
			api, org, err := c.connect(ctx)
			if err != nil {
				return err
			}
			var iid string
			if res.inInstance {
				if iid, err = instanceID(ctx, api, org, inst); err != nil {
					return err
				}
			}
			var body []byte
			switch res.names[0] {
			case "instances":
				r, err := api.CreateInstanceWithResponse(ctx, org, nil, sdk.CreateInstanceJSONRequestBody{Name: name, AllowAnonymous: &anonymous})
				if err := sdk.Check(r, err); err != nil {
					return err
				}
				body = r.Body
			case "credentials":
				in := map[string]any{"username": name}
				if clientPattern != "" {
					in["client_id_pattern"] = clientPattern
				}
				if passwordEnv != "" {
					pw := c.getenv(passwordEnv)
					if pw == "" {
						return fmt.Errorf("$%s is not set", passwordEnv)
					}
					in["password"] = pw
				}
				b, _ := json.Marshal(in)
				r, err := api.CreateCredentialsWithBodyWithResponse(ctx, org, iid, nil, "application/json", bytes.NewReader(b))
				if err := sdk.Check(r, err); err != nil {
					return err
				}
				body = r.Body
			case "acl-rules":
				in := map[string]any{"effect": effect, "action": action, "filter": filter}
				if credential != "" {
					in["credential_id"] = credential
				}
				if cmd.Flags().Changed("position") {
					in["position"] = position
				}
				b, _ := json.Marshal(in)
				r, err := api.CreateACLRuleWithBodyWithResponse(ctx, org, iid, nil, "application/json", bytes.NewReader(b))
				if err := sdk.Check(r, err); err != nil {
					return err
				}
				body = r.Body
			case "api-keys":
				sc := make([]sdk.Scope, len(scopes))
				for i, s := range scopes {
					sc[i] = sdk.Scope(s)
				}
				r, err := api.CreateAPIKeyWithResponse(ctx, org, nil, sdk.CreateAPIKeyJSONRequestBody{Name: name, Scopes: sc})
				if err := sdk.Check(r, err); err != nil {
					return err
				}
				body = r.Body
			default:
				return fmt.Errorf("create %s is not supported", args[0])
			}
			var v any
			if err := json.Unmarshal(body, &v); err != nil {
				return err
			}
			cols := res.cols
			if m, ok := v.(map[string]any); ok {
				if _, ok := m["password"]; ok {
					cols = append(cols, "password")
				}
				if _, ok := m["secret"]; ok {
					cols = append(cols, "secret")
				}
			}
			return c.print(v, cols)
		},
	}
	f := cmd.Flags()
	f.StringVar(&inst, "instance", "", "the instance (name or ID) of a credential or acl-rule")
	f.BoolVar(&anonymous, "allow-anonymous", false, "instance: let devices connect without credentials")
	f.StringVar(&passwordEnv, "password-env", "", "credential: take the password from this environment variable (else generated)")
	f.StringVar(&clientPattern, "client-id-pattern", "", "credential: client IDs it may use")
	f.StringVar(&effect, "effect", "allow", "acl-rule: allow or deny")
	f.StringVar(&action, "action", "all", "acl-rule: publish, subscribe or all")
	f.StringVar(&filter, "filter", "", "acl-rule: topic filter")
	f.StringVar(&credential, "credential-id", "", "acl-rule: only for this credential")
	f.IntVar(&position, "position", 0, "acl-rule: insert at this position (default last)")
	f.StringSliceVar(&scopes, "scopes", []string{"read"}, "api-key: scopes (consume, read, write, admin)")
	return cmd
}

func (c *cli) deleteCmd() *cobra.Command {
	var inst string
	cmd := &cobra.Command{
		Use:   "delete RESOURCE NAME",
		Short: "Delete an instance, credential (by username), api-key (by name) or acl-rule (by ID)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := findResource(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			api, org, err := c.connect(ctx)
			if err != nil {
				return err
			}
			name := args[1]
			switch res.names[0] {
			case "instances":
				id, err := instanceID(ctx, api, org, name)
				if err != nil {
					return err
				}
				r, err := api.DeleteInstanceWithResponse(ctx, org, id, nil)
				err = sdk.Check(r, err)
				if err != nil {
					return err
				}
			case "credentials":
				iid, err := instanceID(ctx, api, org, inst)
				if err != nil {
					return err
				}
				l, err := api.ListCredentialsWithResponse(ctx, org, iid, &sdk.ListCredentialsParams{Name: &name})
				if err := sdk.Check(l, err); err != nil {
					return err
				}
				if len(l.JSON200.Data) != 1 {
					return fmt.Errorf("credential %q: not found", name)
				}
				r, err := api.DeleteCredentialWithResponse(ctx, org, iid, l.JSON200.Data[0].Id, nil)
				if err := sdk.Check(r, err); err != nil {
					return err
				}
			case "acl-rules":
				iid, err := instanceID(ctx, api, org, inst)
				if err != nil {
					return err
				}
				r, err := api.DeleteACLRuleWithResponse(ctx, org, iid, name, nil)
				if err := sdk.Check(r, err); err != nil {
					return err
				}
			case "api-keys":
				l, err := api.ListAPIKeysWithResponse(ctx, org, &sdk.ListAPIKeysParams{Name: &name})
				if err := sdk.Check(l, err); err != nil {
					return err
				}
				if len(l.JSON200.Data) != 1 {
					return fmt.Errorf("api-key %q: not found", name)
				}
				r, err := api.RevokeAPIKeyWithResponse(ctx, org, l.JSON200.Data[0].Id)
				if err := sdk.Check(r, err); err != nil {
					return err
				}
			default:
				return fmt.Errorf("delete %s is not supported", args[0])
			}
			fmt.Fprintf(c.stdout, "deleted %s %s\n", res.names[1], name)
			return nil
		},
	}
	cmd.Flags().StringVar(&inst, "instance", "", "the instance (name or ID) of a credential or acl-rule")
	return cmd
}

func (c *cli) planCmd() *cobra.Command {
	var file string
	var prune bool
	cmd := &cobra.Command{
		Use:   "plan -f aerie.yaml",
		Short: "Show what apply would change (+ create, ~ update, - delete); exit 0 none, 2 some, 1 error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := LoadFile(file, c.getenv)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			api, org, err := c.connect(ctx)
			if err != nil {
				return err
			}
			p, err := MakePlan(ctx, api, org, f, prune)
			if err != nil {
				return err
			}
			p.Print(c.stdout)
			if len(p.Changes) > 0 {
				return errChanges
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "aerie.yaml", "the declarative file")
	cmd.Flags().BoolVar(&prune, "prune", false, "also delete instances and credentials the file does not list")
	return cmd
}

func (c *cli) applyCmd() *cobra.Command {
	var file, secretsFile string
	var prune bool
	cmd := &cobra.Command{
		Use:   "apply -f aerie.yaml",
		Short: "Make the org match the file (validated whole first); generated passwords are written once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := LoadFile(file, c.getenv)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			api, org, err := c.connect(ctx)
			if err != nil {
				return err
			}
			p, err := MakePlan(ctx, api, org, f, prune)
			if err != nil {
				return err
			}
			p.Print(c.stdout)
			if len(p.Changes) == 0 {
				return nil
			}
			secrets, err := Apply(ctx, api, org, p, c.stderr)
			if werr := c.writeSecrets(secrets, secretsFile); werr != nil {
				return errors.Join(err, werr)
			}
			if err != nil {
				return err
			}
			a, ch, d := p.Counts()
			fmt.Fprintf(c.stdout, "Apply complete: %d added, %d changed, %d destroyed.\n", a, ch, d)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "aerie.yaml", "the declarative file")
	cmd.Flags().BoolVar(&prune, "prune", false, "also delete instances and credentials the file does not list")
	cmd.Flags().StringVar(&secretsFile, "secrets-file", "", "append generated passwords (YAML) to this file, mode 0600 (default: stdout)")
	return cmd
}

// writeSecrets writes generated passwords once: appended to path (0600),
// or to stdout.
func (c *cli) writeSecrets(s []Secret, path string) error {
	if len(s) == 0 {
		return nil
	}
	b, err := yaml.Marshal(map[string]any{"credentials": s})
	if err != nil {
		return fmt.Errorf("encode secrets: %w", err)
	}
	if path == "" || path == "-" {
		fmt.Fprintln(c.stdout, "# Generated device passwords (shown once):")
		_, err := c.stdout.Write(b)
		return err
	}
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("secrets file: %w", err)
	}
	if _, err := fh.Write(append([]byte("---\n"), b...)); err != nil {
		fh.Close()
		return fmt.Errorf("secrets file: %w", err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("secrets file: %w", err)
	}
	fmt.Fprintf(c.stdout, "%d generated passwords written to %s\n", len(s), path)
	return nil
}
