package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/aeriemq/aerie/sdk"
)

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
