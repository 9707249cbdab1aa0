package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/aeriemq/aerie/sdk"
)

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
			return c.login(cmd.Context(), email, name, passwordStdin)
		},
	}
	cmd.Flags().StringVar(&email, "email", "", "log in with this email (password from $AERIE_PASSWORD or stdin)")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from stdin")
	cmd.Flags().StringVar(&name, "name", "", "context name (default \"default\")")
	return cmd
}

// login finds the API key (given, or created with email and password) and
// the org, and saves them, with the URL, as the context called name.
func (c *cli) login(ctx context.Context, email, name string, passwordStdin bool) error {
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
		var err error
		if key, org, err = c.keyFromPassword(ctx, url, email, org, passwordStdin); err != nil {
			return err
		}
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
	path, p, err := c.profile()
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
}

// keyFromPassword signs in with email and password ($AERIE_PASSWORD, or
// stdin) and creates an admin API key named aeriectl-<time> in org (when
// empty: the session's org, or the only one the user sees).
func (c *cli) keyFromPassword(ctx context.Context, url, email, org string, passwordStdin bool) (key, orgID string, err error) {
	pw := c.getenv("AERIE_PASSWORD")
	if pw == "" || passwordStdin {
		line, err := bufio.NewReader(c.stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", "", fmt.Errorf("read password: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	api, err := sdk.New(ctx, sdk.Options{BaseURL: url, Email: email, Password: pw, UserAgent: "aeriectl"})
	if err != nil {
		return "", "", err
	}
	if org == "" {
		if s := api.Session(); s != nil && s.Org != nil {
			org = s.Org.Id
		} else if org, err = onlyOrg(ctx, api); err != nil {
			return "", "", err
		}
	}
	body := sdk.CreateAPIKeyJSONRequestBody{Name: "aeriectl-" + time.Now().UTC().Format("20060102-150405"), Scopes: []sdk.Scope{sdk.ScopeAdmin}}
	r, err := api.CreateAPIKeyWithResponse(ctx, org, nil, body)
	if err := sdk.Check(r, err); err != nil {
		return "", "", fmt.Errorf("create api key: %w", err)
	}
	return r.JSON201.Secret, org, nil
}

func (c *cli) configCmd() *cobra.Command {
	cfg := &cobra.Command{Use: "config", Short: "Saved contexts"}
	cfg.AddCommand(&cobra.Command{
		Use:   "use-context NAME",
		Short: "Make a saved context the current one",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			path, p, err := c.profile()
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
			_, p, err := c.profile()
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
