package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/aeriemq/aerie/sdk"
)

// createQuery is what one create call takes: the org, the instance (for the
// kinds that live in one), the NAME argument and create's flags.
type createQuery struct {
	org, instance, name                                      string
	effect, action, filter, credential, passwordEnv, pattern string
	scopes                                                   []string
	position                                                 int
	positionSet, anonymous                                   bool
}

func (c *cli) createCmd() *cobra.Command {
	var q createQuery
	var inst string
	cmd := &cobra.Command{
		Use:   "create RESOURCE [NAME]",
		Short: "Create an instance NAME, a credential USERNAME, an api-key NAME or an acl-rule",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := findResource(args[0])
			if err != nil {
				return err
			}
			if len(args) == 2 {
				q.name = args[1]
			}
			q.positionSet = cmd.Flags().Changed("position")
			return c.create(cmd.Context(), res, args[0], inst, q)
		},
	}
	f := cmd.Flags()
	f.StringVar(&inst, "instance", "", "the instance (name or ID) of a credential or acl-rule")
	f.BoolVar(&q.anonymous, "allow-anonymous", false, "instance: let devices connect without credentials")
	f.StringVar(&q.passwordEnv, "password-env", "", "credential: take the password from this environment variable (else generated)")
	f.StringVar(&q.pattern, "client-id-pattern", "", "credential: client IDs it may use")
	f.StringVar(&q.effect, "effect", "allow", "acl-rule: allow or deny")
	f.StringVar(&q.action, "action", "all", "acl-rule: publish, subscribe or all")
	f.StringVar(&q.filter, "filter", "", "acl-rule: topic filter")
	f.StringVar(&q.credential, "credential-id", "", "acl-rule: only for this credential")
	f.IntVar(&q.position, "position", 0, "acl-rule: insert at this position (default last)")
	f.StringSliceVar(&q.scopes, "scopes", []string{"read"}, "api-key: scopes (consume, read, write, admin)")
	return cmd
}

// create makes one item of res and prints it, with its generated password
// or secret when the API answers with one (shown once).
func (c *cli) create(ctx context.Context, res resource, kind, instRef string, q createQuery) error {
	api, org, err := c.connect(ctx)
	if err != nil {
		return err
	}
	q.org = org
	if res.inInstance {
		if q.instance, err = instanceID(ctx, api, org, instRef); err != nil {
			return err
		}
	}
	if res.create == nil {
		return fmt.Errorf("create %s is not supported", kind)
	}
	body, err := res.create(ctx, c, api, q)
	if err != nil {
		return err
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
}

func createInstance(ctx context.Context, _ *cli, api *sdk.API, q createQuery) ([]byte, error) {
	return page(api.CreateInstanceWithResponse(ctx, q.org, nil, sdk.CreateInstanceJSONRequestBody{Name: q.name, AllowAnonymous: &q.anonymous}))
}

func createCredential(ctx context.Context, c *cli, api *sdk.API, q createQuery) ([]byte, error) {
	in := map[string]any{"username": q.name}
	if q.pattern != "" {
		in["client_id_pattern"] = q.pattern
	}
	if q.passwordEnv != "" {
		pw := c.getenv(q.passwordEnv)
		if pw == "" {
			return nil, fmt.Errorf("$%s is not set", q.passwordEnv)
		}
		in["password"] = pw
	}
	b, _ := json.Marshal(in)
	return page(api.CreateCredentialsWithBodyWithResponse(ctx, q.org, q.instance, nil, "application/json", bytes.NewReader(b)))
}

func createACLRule(ctx context.Context, _ *cli, api *sdk.API, q createQuery) ([]byte, error) {
	in := map[string]any{"effect": q.effect, "action": q.action, "filter": q.filter}
	if q.credential != "" {
		in["credential_id"] = q.credential
	}
	if q.positionSet {
		in["position"] = q.position
	}
	b, _ := json.Marshal(in)
	return page(api.CreateACLRuleWithBodyWithResponse(ctx, q.org, q.instance, nil, "application/json", bytes.NewReader(b)))
}

func createAPIKey(ctx context.Context, _ *cli, api *sdk.API, q createQuery) ([]byte, error) {
	sc := make([]sdk.Scope, len(q.scopes))
	for i, s := range q.scopes {
		sc[i] = sdk.Scope(s)
	}
	return page(api.CreateAPIKeyWithResponse(ctx, q.org, nil, sdk.CreateAPIKeyJSONRequestBody{Name: q.name, Scopes: sc}))
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
