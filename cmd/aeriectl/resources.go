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
	// list fetches one page of the kind as the API's JSON list envelope.
	list func(ctx context.Context, api *sdk.API, q listQuery) ([]byte, error)
	// create makes one (nil: create is not supported) and returns the
	// API's JSON answer.
	create func(ctx context.Context, c *cli, api *sdk.API, q createQuery) ([]byte, error)
}

// listQuery is what one list call takes.
type listQuery struct {
	org, instance string
	// name keeps only the item of that name, where the API filters by name.
	name   *string
	cursor *string
}

// page returns a generated response's raw body, or its error.
func page(r interface{ StatusCode() int }, err error) ([]byte, error) {
	return sdk.Body(r), sdk.Check(r, err)
}

var resources = []resource{
	{names: []string{"instances", "instance", "inst"}, cols: []string{"id", "name", "status", "plan", "node_id"},
		list: func(ctx context.Context, api *sdk.API, q listQuery) ([]byte, error) {
			return page(api.ListInstancesWithResponse(ctx, q.org, &sdk.ListInstancesParams{Cursor: q.cursor, Name: q.name}))
		}, create: createInstance},
	{names: []string{"credentials", "credential", "cred"}, cols: []string{"id", "username", "mqtt_username", "enabled", "password_source"}, inInstance: true,
		list: func(ctx context.Context, api *sdk.API, q listQuery) ([]byte, error) {
			return page(api.ListCredentialsWithResponse(ctx, q.org, q.instance, &sdk.ListCredentialsParams{Cursor: q.cursor, Name: q.name}))
		}, create: createCredential},
	{names: []string{"acl-rules", "acl-rule", "acl"}, cols: []string{"position", "id", "effect", "action", "filter", "credential_id"}, inInstance: true,
		list: func(ctx context.Context, api *sdk.API, q listQuery) ([]byte, error) {
			return page(api.ListACLRulesWithResponse(ctx, q.org, q.instance, &sdk.ListACLRulesParams{Cursor: q.cursor}))
		}, create: createACLRule},
	{names: []string{"api-keys", "api-key", "key"}, cols: []string{"id", "name", "prefix", "scopes", "expires_at"},
		list: func(ctx context.Context, api *sdk.API, q listQuery) ([]byte, error) {
			return page(api.ListAPIKeysWithResponse(ctx, q.org, &sdk.ListAPIKeysParams{Cursor: q.cursor, Name: q.name}))
		}, create: createAPIKey},
	{names: []string{"members", "member"}, cols: []string{"user_id", "email", "role"},
		list: func(ctx context.Context, api *sdk.API, q listQuery) ([]byte, error) {
			return page(api.ListMembersWithResponse(ctx, q.org, &sdk.ListMembersParams{Cursor: q.cursor}))
		}},
	{names: []string{"plans", "plan"}, cols: []string{"id", "name", "price_cents"},
		list: func(ctx context.Context, api *sdk.API, _ listQuery) ([]byte, error) {
			return page(api.ListPlansWithResponse(ctx))
		}},
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
			var name *string
			if len(args) == 2 {
				name = &args[1]
			}
			return c.show(cmd.Context(), res, inst, name, verb == "get")
		},
	}
	cmd.Flags().StringVar(&inst, "instance", "", "the instance (name or ID) of credentials and acl-rules")
	return cmd
}

// show lists every item of res (of the instance instRef for the kinds that
// live in one), or the one called name, and prints them as -o asks; one
// prints a named item alone rather than as a list of one.
func (c *cli) show(ctx context.Context, res resource, instRef string, name *string, one bool) error {
	api, org, err := c.connect(ctx)
	if err != nil {
		return err
	}
	q := listQuery{org: org, name: name}
	if res.inInstance {
		if q.instance, err = instanceID(ctx, api, org, instRef); err != nil {
			return err
		}
	}
	var data any
	data, err = collectRaw(ctx, func(cur *string) (rawPage, error) {
		q.cursor = cur
		b, err := res.list(ctx, api, q)
		return rawPage{b}, err
	})
	if err != nil {
		return err
	}
	if name != nil {
		if l, _ := data.([]any); len(l) == 0 {
			return fmt.Errorf("%s %q: not found", res.names[1], *name)
		} else if one {
			data = l[0]
		}
	}
	return c.print(data, res.cols)
}

type rawPage struct{ body []byte }

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
