package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestComposeFileMatchesBinary parses docker-compose.yml and checks that
// every aerie service runs a real subcommand with flags and environment
// variables that subcommand accepts.
func TestComposeFileMatchesBinary(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Build       any               `yaml:"build"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("parse docker-compose.yml: %v", err)
	}
	flagRe := regexp.MustCompile(`(?m)^\s+-([a-z][a-z0-9-]*)`)
	envRe := regexp.MustCompile(`env ([A-Z_]+)(?: or ([A-Z_]+))?`)
	help := map[string]string{}
	aerieServices := 0
	for name, svc := range doc.Services {
		if svc.Image != "aerie:local" {
			continue
		}
		aerieServices++
		t.Run(name, func(t *testing.T) {
			if len(svc.Command) == 0 {
				t.Fatal("no command")
			}
			sub := svc.Command[0]
			if _, ok := help[sub]; !ok {
				out, _ := exec.Command(aerieBin, sub, "-h").CombinedOutput()
				help[sub] = string(out)
			}
			flags := map[string]bool{}
			for _, m := range flagRe.FindAllStringSubmatch(help[sub], -1) {
				flags[m[1]] = true
			}
			envs := map[string]bool{}
			for _, m := range envRe.FindAllStringSubmatch(help[sub], -1) {
				envs[m[1]] = true
				if m[2] != "" {
					envs[m[2]] = true
				}
			}
			if len(flags) == 0 {
				t.Fatalf("aerie %s -h listed no flags:\n%s", sub, help[sub])
			}
			for _, arg := range svc.Command[1:] {
				if !strings.HasPrefix(arg, "--") {
					continue
				}
				f := strings.SplitN(strings.TrimPrefix(arg, "--"), "=", 2)[0]
				if !flags[f] {
					t.Errorf("flag --%s is not accepted by 'aerie %s'", f, sub)
				}
			}
			for k := range svc.Environment {
				if !envs[k] {
					t.Errorf("environment %s is not read by 'aerie %s'", k, sub)
				}
			}
		})
	}
	if aerieServices < 3 {
		t.Fatalf("compose file has %d aerie services; want a control plane and two data-plane nodes", aerieServices)
	}
	for _, s := range []string{"postgres", "controlplane", "dataplane-1", "dataplane-2"} {
		if _, ok := doc.Services[s]; !ok {
			t.Errorf("service %s missing", s)
		}
	}
}
