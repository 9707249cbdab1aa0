package main_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
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

// composeService is the part of a compose service the cell profile test reads.
type composeService struct {
	Image       string            `yaml:"image"`
	Profiles    []string          `yaml:"profiles"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
}

// commandFlags maps "--flag value" pairs of a compose command to flag → value.
func commandFlags(t *testing.T, cmd []string) map[string]string {
	t.Helper()
	flags := map[string]string{}
	for i := 1; i < len(cmd); i++ {
		if !strings.HasPrefix(cmd[i], "--") {
			t.Fatalf("command %q: %q is not a flag", cmd, cmd[i])
		}
		if k, v, ok := strings.Cut(strings.TrimPrefix(cmd[i], "--"), "="); ok {
			flags[k] = v
			continue
		}
		if i+1 >= len(cmd) {
			t.Fatalf("command %q: flag %s has no value", cmd, cmd[i])
		}
		flags[strings.TrimPrefix(cmd[i], "--")] = cmd[i+1]
		i++
	}
	return flags
}

// TestComposeCellProfile checks the opt-in 3-node cell of docker-compose.yml:
// only cell-1..3 are in profile "cell" (the default services are unchanged),
// they run `aerie dataplane` in one cell with cluster listeners the others
// can reach and routes to exactly the two others, one shared secret (with a
// development default), a node token each (created as the file's header
// says), a volume each, and host ports that collide with no other service.
func TestComposeCellProfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]composeService `yaml:"services"`
		Volumes  map[string]any            `yaml:"volumes"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("parse docker-compose.yml: %v", err)
	}
	cellSvcs := []string{"cell-1", "cell-2", "cell-3"}
	for name, svc := range doc.Services {
		inCell := strings.HasPrefix(name, "cell-")
		if inCell != (len(svc.Profiles) == 1 && svc.Profiles[0] == "cell") {
			t.Errorf("service %s: profiles %q (only cell-N services are in profile \"cell\"; the default services have none)", name, svc.Profiles)
		}
	}
	hostPorts := map[string]string{}
	for name, svc := range doc.Services {
		for _, p := range svc.Ports {
			hp, _, _ := strings.Cut(p, ":")
			if other, dup := hostPorts[hp]; dup {
				t.Errorf("host port %s is published by %s and %s", hp, other, name)
			}
			hostPorts[hp] = name
		}
	}
	clusterPort := map[string]string{}
	var cellName, secret string
	tokens := map[string]bool{}
	volumes := map[string]bool{}
	for _, name := range cellSvcs {
		svc, ok := doc.Services[name]
		if !ok {
			t.Fatalf("service %s missing", name)
		}
		if svc.Image != "aerie:local" || len(svc.Command) == 0 || svc.Command[0] != "dataplane" {
			t.Fatalf("%s: image %q command %q; want aerie:local running dataplane", name, svc.Image, svc.Command)
		}
		f := commandFlags(t, svc.Command)
		if f["cell"] == "" || (cellName != "" && f["cell"] != cellName) {
			t.Errorf("%s: --cell %q; want one cell for the three", name, f["cell"])
		}
		cellName = f["cell"]
		host, port, err := net.SplitHostPort(f["cluster-addr"])
		if err != nil || port == "" || host == "" || host == "127.0.0.1" || host == "localhost" {
			t.Errorf("%s: --cluster-addr %q must listen where the other containers reach it (e.g. 0.0.0.0:6222)", name, f["cluster-addr"])
		}
		clusterPort[name] = port
		if r := f["cell-replicas"]; r != "" && r != "1" && r != "2" && r != "3" {
			t.Errorf("%s: --cell-replicas %s with 3 nodes", name, r)
		}
		env := svc.Environment
		if !regexp.MustCompile(`^\$\{AERIE_CLUSTER_SECRET:-[^}]+\}$`).MatchString(env["AERIE_CLUSTER_SECRET"]) {
			t.Errorf("%s: AERIE_CLUSTER_SECRET %q; want ${AERIE_CLUSTER_SECRET:-dev default}", name, env["AERIE_CLUSTER_SECRET"])
		}
		if secret != "" && env["AERIE_CLUSTER_SECRET"] != secret {
			t.Errorf("%s: a different cluster secret", name)
		}
		secret = env["AERIE_CLUSTER_SECRET"]
		if f["cluster-secret"] != "" {
			t.Errorf("%s: the secret belongs in the environment, not on the command line", name)
		}
		m := regexp.MustCompile(`^\$\{(AERIE_[A-Z0-9_]+_TOKEN):-\}$`).FindStringSubmatch(env["AERIE_NODE_TOKEN"])
		if m == nil || tokens[m[1]] {
			t.Errorf("%s: AERIE_NODE_TOKEN %q; want its own ${AERIE_CELLn_TOKEN:-}", name, env["AERIE_NODE_TOKEN"])
		} else {
			tokens[m[1]] = true
			if want := "node create --cell " + cellName + " " + name; !strings.Contains(string(b), want) || !strings.Contains(string(b), "save as "+m[1]) {
				t.Errorf("%s: the header must say how its token is made (%q, saved as %s)", name, want, m[1])
			}
		}
		if len(svc.Volumes) != 1 {
			t.Errorf("%s: volumes %q; want its own data volume", name, svc.Volumes)
		} else if vol, path, _ := strings.Cut(svc.Volumes[0], ":"); volumes[vol] || path != f["data-dir"] {
			t.Errorf("%s: volume %q shared or not mounted at --data-dir %s", name, svc.Volumes[0], f["data-dir"])
		} else if _, declared := doc.Volumes[vol]; !declared {
			t.Errorf("%s: volume %s not declared", name, vol)
		} else {
			volumes[vol] = true
		}
		_, mqttPort, _ := net.SplitHostPort(f["mqtt-addr"])
		if pub := env["AERIE_PUBLIC_MQTT_PORT"]; pub == "" || !slices.Contains(svc.Ports, pub+":"+mqttPort) {
			t.Errorf("%s: AERIE_PUBLIC_MQTT_PORT %q does not publish --mqtt-addr port %s (ports %q)", name, pub, mqttPort, svc.Ports)
		}
	}
	for _, name := range cellSvcs {
		var want []string
		for _, other := range cellSvcs {
			if other != name {
				want = append(want, other+":"+clusterPort[other])
			}
		}
		got := strings.Split(commandFlags(t, doc.Services[name].Command)["cluster-routes"], ",")
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: --cluster-routes %q; want the two other nodes' cluster addresses %q", name, got, want)
		}
	}
}
