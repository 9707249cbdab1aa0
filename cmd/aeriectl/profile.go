package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"gopkg.in/yaml.v3"
)

// Context is one saved connection: an API URL, an API key and an org.
type Context struct {
	URL    string `yaml:"url"`
	APIKey string `yaml:"api_key"`
	OrgID  string `yaml:"org_id,omitempty"`
}

// Profile is aeriectl's config file: named contexts and the current one.
type Profile struct {
	Current  string              `yaml:"current_context"`
	Contexts map[string]*Context `yaml:"contexts"`
}

// profilePath is <user config dir>/aerie/aeriectl.yaml (AERIECTL_CONFIG
// overrides it).
func profilePath(getenv func(string) string) (string, error) {
	if p := getenv("AERIECTL_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("user config dir: %w", err)
	}
	return filepath.Join(dir, "aerie", "aeriectl.yaml"), nil
}

// profile loads the profile file of this invocation's environment and
// returns it with its path.
func (c *cli) profile() (string, *Profile, error) {
	path, err := profilePath(c.getenv)
	if err != nil {
		return "", nil, err
	}
	p, err := loadProfile(path)
	return path, p, err
}

func loadProfile(path string) (*Profile, error) {
	p := &Profile{Contexts: map[string]*Context{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if err := yaml.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if p.Contexts == nil {
		p.Contexts = map[string]*Context{}
	}
	return p, nil
}

// save writes the profile with mode 0600 (it holds API keys), atomically.
func (p *Profile) save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("config dir: %w", err)
	}
	b, err := yaml.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode profile: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".aeriectl-*")
	if err != nil {
		return fmt.Errorf("write profile: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write profile: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write profile: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write profile: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write profile: %w", err)
	}
	return nil
}

func (p *Profile) names() []string {
	var out []string
	for n := range p.Contexts {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
