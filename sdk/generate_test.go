package sdk

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode"

	"gopkg.in/yaml.v3"
)

// TestGeneratedCodeIsCurrent regenerates the client from ../openapi.yaml
// into a temporary file and fails when it differs from aerie.gen.go: run
// `go generate ./sdk` (or `make generate`) after changing the spec.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	fresh := generate(t, "../openapi.yaml")
	committed, err := os.ReadFile("aerie.gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh, committed) {
		fl, cl := strings.Split(string(fresh), "\n"), strings.Split(string(committed), "\n")
		for i := 0; i < len(fl) && i < len(cl); i++ {
			if fl[i] != cl[i] {
				t.Fatalf("sdk/aerie.gen.go is stale against openapi.yaml (first difference at line %d:\n  generated: %s\n  committed: %s)\nrun: go generate ./sdk", i+1, fl[i], cl[i])
			}
		}
		t.Fatalf("sdk/aerie.gen.go is stale against openapi.yaml (%d vs %d lines); run: go generate ./sdk", len(fl), len(cl))
	}
}

// TestStaleCheckSeesSpecChanges: the generation the check compares with
// does change when the spec does (a new query parameter here), so a spec
// edit without `go generate` fails TestGeneratedCodeIsCurrent.
func TestStaleCheckSeesSpecChanges(t *testing.T) {
	spec, err := os.ReadFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const anchor = "    NameFilter: { name: name, in: query"
	if !bytes.Contains(spec, []byte(anchor)) {
		t.Fatal("anchor not in openapi.yaml")
	}
	edited := bytes.Replace(spec, []byte("        - { $ref: '#/components/parameters/NameFilter' }\n"),
		[]byte("        - { $ref: '#/components/parameters/NameFilter' }\n        - { name: zzz_extra, in: query, schema: { type: string } }\n"), 1)
	path := filepath.Join(t.TempDir(), "openapi.yaml")
	if err := os.WriteFile(path, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("aerie.gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if got := generate(t, path); bytes.Equal(got, committed) || !bytes.Contains(got, []byte("ZzzExtra")) {
		t.Fatal("a spec change did not change the generated code")
	}
}

// generate runs oapi-codegen with the SDK's configuration on spec and
// returns the generated file.
func generate(t *testing.T, spec string) []byte {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "aerie.gen.go")
	conf, err := os.ReadFile("oapi-codegen.yaml")
	if err != nil {
		t.Fatal(err)
	}
	conf = bytes.Replace(conf, []byte("output: aerie.gen.go"), []byte("output: "+out), 1)
	if err := os.WriteFile(filepath.Join(dir, "conf.yaml"), conf, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "tool", "oapi-codegen", "-config", filepath.Join(dir, "conf.yaml"), spec)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("oapi-codegen: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// operationIDs returns every operationId of openapi.yaml.
func operationIDs(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, ops := range doc.Paths {
		for m, op := range ops {
			var o struct {
				OperationID string `yaml:"operationId"`
			}
			if m == "parameters" || op.Decode(&o) != nil || o.OperationID == "" {
				continue
			}
			ids = append(ids, o.OperationID)
		}
	}
	return ids
}

// MethodName is the ClientWithResponses method of an operationId.
func MethodName(operationID string) string {
	r := []rune(operationID)
	r[0] = unicode.ToUpper(r[0])
	return string(r) + "WithResponse"
}

// TestEveryOperationHasAMethod checks that each operationId of the spec is
// a method of the SDK's client.
func TestEveryOperationHasAMethod(t *testing.T) {
	ids := operationIDs(t, "../openapi.yaml")
	if len(ids) < 50 {
		t.Fatalf("only %d operations read from openapi.yaml", len(ids))
	}
	typ := reflect.TypeOf(&API{})
	for _, id := range ids {
		if _, ok := typ.MethodByName(MethodName(id)); !ok {
			t.Errorf("operation %s has no SDK method %s", id, MethodName(id))
		}
	}
}
