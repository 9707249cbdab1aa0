package main

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/aeriemq/aerie/sdk"
)

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
	f.StringSliceVar(&scopes, "scopes", []string{"read"}, "api-key: scopes (read, write, admin)")
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
