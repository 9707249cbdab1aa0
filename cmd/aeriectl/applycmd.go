package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/aeriemq/aerie/sdk"
)

// plan loads and validates the file, connects and compares the file with
// the org.
func (c *cli) plan(ctx context.Context, file string, prune bool) (*sdk.API, string, *Plan, error) {
	f, err := LoadFile(file, c.getenv)
	if err != nil {
		return nil, "", nil, err
	}
	api, org, err := c.connect(ctx)
	if err != nil {
		return nil, "", nil, err
	}
	p, err := MakePlan(ctx, api, org, f, prune)
	if err != nil {
		return nil, "", nil, err
	}
	return api, org, p, nil
}

func (c *cli) planCmd() *cobra.Command {
	var file string
	var prune bool
	cmd := &cobra.Command{
		Use:   "plan -f aerie.yaml",
		Short: "Show what apply would change (+ create, ~ update, - delete); exit 0 none, 2 some, 1 error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			_, _, p, err := c.plan(ctx, file, prune)
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
			ctx := cmd.Context()
			api, org, p, err := c.plan(ctx, file, prune)
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
