package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"

	"github.com/aeriemq/aerie/sdk"
)

// fleetConfig is instances × perInstance credentials with ordered ACL rules,
// a quota override, an API key, a member and both data sources.
func fleetConfig(instances []string, perInstance int, memberEmail string, vault vaultSecret) string {
	quoted := make([]string, len(instances))
	for i, n := range instances {
		quoted[i] = fmt.Sprintf("%q", n)
	}
	return fmt.Sprintf(`
terraform {
  required_providers {
    aerie = { source = "aeriemq/aerie" }
  }
}

provider "aerie" {} # AERIE_URL and AERIE_API_KEY

locals {
  instances = toset([%s])
  devices = { for p in setproduct(local.instances, range(%d)) : "${p[0]}-${p[1]}" => { instance = p[0], n = p[1] } }
}

resource "aerie_instance" "i" {
  for_each = local.instances
  name     = "fleet-${each.key}"
}

resource "aerie_credential" "dev" {
  for_each    = local.devices
  instance_id = aerie_instance.i[each.value.instance].id
  username    = "dev-${each.value.n}"
}

# A password from a vault: write-only, never in the state.
resource "aerie_credential" "vault" {
  instance_id         = aerie_instance.i[%q].id
  username            = "from-vault"
  password_wo         = %q
  password_wo_version = %d
}

resource "aerie_acl_rules" "r" {
  for_each    = aerie_instance.i
  instance_id = each.value.id
  rules = [
    { effect = "deny", action = "publish", filter = "devices/$${username}/secret" },
    { effect = "allow", action = "all", filter = "devices/$${username}/#" },
    { effect = "allow", action = "subscribe", filter = "broadcast/#" },
    { effect = "allow", action = "publish", filter = "broadcast/#", credential_id = aerie_credential.dev["${each.key}-0"].id },
  ]
}

resource "aerie_instance_quotas" "q" {
  instance_id     = aerie_instance.i[%q].id
  max_connections = 5
}

resource "aerie_api_key" "ci" {
  name   = "ci"
  scopes = ["read"]
}

resource "aerie_org_member" "m" {
  email = %q
  role  = "viewer"
}

data "aerie_plans" "all" {}

data "aerie_instance" "first" {
  name = aerie_instance.i[%q].name
}

output "device" {
  sensitive = true
  value = {
    username = aerie_credential.dev["%s-0"].mqtt_username
    password = aerie_credential.dev["%s-0"].password
    mqtt     = data.aerie_instance.first.endpoints.mqtt
  }
}

output "plans" {
  value = [for p in data.aerie_plans.all.plans : p.id]
}
`, strings.Join(quoted, ", "), perInstance, instances[0], vault.password, vault.version, instances[0], memberEmail, instances[0], instances[0], instances[0])
}

// vaultSecret is the supplied password of aerie_credential.vault and its
// password_wo_version.
type vaultSecret struct {
	password string
	version  int
}

var vault1, vault2 = vaultSecret{"vault-supplied-secret-0042", 1}, vaultSecret{"vault-rotated-secret-0043", 2}

// planChanges reads "Plan: A to add, C to change, D to destroy." (zeros
// when there is nothing to do).
func planChanges(t testing.TB, out string) (add, change, destroy int) {
	t.Helper()
	m := regexp.MustCompile(`Plan: (\d+) to add, (\d+) to change, (\d+) to destroy`).FindStringSubmatch(out)
	if m == nil {
		return 0, 0, 0
	}
	fmt.Sscan(m[1], &add)
	fmt.Sscan(m[2], &change)
	fmt.Sscan(m[3], &destroy)
	return
}

// TestTerraformFleet drives the real terraform binary through the provider
// against a real `aerie serve`: 3 instances × 100 credentials with ACLs,
// a device connecting with an output password, an idempotent re-plan,
// drift repair, import of every resource type, and a destroy that leaves
// the org empty.
func TestTerraformFleet(t *testing.T) {
	ctx := context.Background()
	s := serve(t)
	owner := s.signup(t, "owner@example.com")
	member := s.signup(t, "member@example.com")
	bootstrapKey, key := owner.apiKey(t)
	w := newWorkdir(t, s, key)
	instances := []string{"a", "b", "c"}
	const perInstance = 100
	w.write(fleetConfig(instances, perInstance, member.email, vault1))

	began := time.Now()
	out, _ := w.run([]int{0}, "apply", "-auto-approve", "-parallelism=16")
	t.Logf("terraform apply of %d instances × %d credentials: %s", len(instances), perInstance, time.Since(began).Round(time.Millisecond))
	total := len(instances)*(1+perInstance+1) + 4 // + vault credential, quotas, api key, member
	if !strings.Contains(out, fmt.Sprintf("Apply complete! Resources: %d added, 0 changed, 0 destroyed.", total)) {
		t.Fatalf("apply did not add %d resources:\n%s", total, lastLines(out, 20))
	}

	// The org holds what the configuration says.
	insts, err := sdk.Collect(ctx, owner.c.InstancesPages(owner.org))
	if err != nil || len(insts) != len(instances) {
		t.Fatalf("instances after apply: %d, %v", len(insts), err)
	}
	byName := map[string]sdk.Instance{}
	for _, in := range insts {
		byName[in.Name] = in
		want := perInstance
		if in.Name == "fleet-"+instances[0] {
			want++ // the vault credential
		}
		creds, err := sdk.Collect(ctx, owner.c.CredentialsPages(owner.org, in.Id))
		if err != nil || len(creds) != want {
			t.Fatalf("instance %s has %d credentials (%v), want %d", in.Name, len(creds), err, want)
		}
		rules, err := sdk.Collect(ctx, owner.c.ACLRulesPages(owner.org, in.Id))
		if err != nil || len(rules) != 4 || rules[0].Effect != "deny" || rules[3].CredentialId == nil {
			t.Fatalf("instance %s rules %+v (%v); want the 4 configured, in order", in.Name, rules, err)
		}
	}
	if q := byName["fleet-a"].Quotas.MaxConnections; q == nil || *q != 5 {
		t.Fatalf("fleet-a max_connections %v, want the override 5", q)
	}

	t.Run("a device connects with an output password", func(t *testing.T) {
		var dev struct{ Username, Password, MQTT string }
		if err := json.Unmarshal(w.outputs()["device"], &dev); err != nil {
			t.Fatal(err)
		}
		if dev.Password == "" || !strings.HasSuffix(dev.Username, "@"+byName["fleet-a"].Id) {
			t.Fatalf("output device = %q / password set %v", dev.Username, dev.Password != "")
		}
		got := make(chan string, 4)
		c := connect(t, s.mqtt, dev.Username, dev.Password, func(p *paho.Publish) { got <- p.Topic })
		sub, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "devices/dev-0/#", QoS: 1}}})
		if err != nil || sub.Reasons[0] > 2 {
			t.Fatalf("subscribe to own topics: %v %+v", err, sub)
		}
		// The deny rule comes first: the broker refuses the secret topic.
		if pa, err := c.Publish(ctx, &paho.Publish{Topic: "devices/dev-0/secret", QoS: 1, Payload: []byte("x")}); err == nil || pa == nil || pa.ReasonCode != 0x87 {
			t.Fatalf("publish to devices/dev-0/secret: %v %+v; want refused (0x87) by the deny rule", err, pa)
		}
		if _, err := c.Publish(ctx, &paho.Publish{Topic: "devices/dev-0/temp", QoS: 1, Payload: []byte("21.5")}); err != nil {
			t.Fatalf("publish devices/dev-0/temp: %v", err)
		}
		select {
		case topic := <-got:
			if topic != "devices/dev-0/temp" {
				t.Fatalf("received %s, want devices/dev-0/temp", topic)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the device did not receive its own publish")
		}
	})

	t.Run("a device connects with a write-only supplied password kept out of the state", func(t *testing.T) {
		c := connect(t, s.mqtt, "from-vault@"+byName["fleet-a"].Id, vault1.password, func(*paho.Publish) {})
		if _, err := c.Publish(ctx, &paho.Publish{Topic: "devices/from-vault/x", QoS: 1, Payload: []byte("1")}); err != nil {
			t.Fatalf("publish: %v", err)
		}
		st, err := os.ReadFile(filepath.Join(w.dir, "terraform.tfstate"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(st), vault1.password) {
			t.Fatal("the write-only password is in terraform.tfstate")
		}
	})

	t.Run("a taken name fails on the name attribute", func(t *testing.T) {
		dup := newWorkdir(t, s, key)
		dup.write(`
terraform {
  required_providers {
    aerie = { source = "aeriemq/aerie" }
  }
}
resource "aerie_instance" "dup" {
  name = "fleet-b"
}
`)
		out, _ := dup.run([]int{1}, "apply", "-auto-approve")
		if !strings.Contains(out, "Attribute name ") || !strings.Contains(out, `resource "aerie_instance" "dup"`) {
			t.Fatalf("apply of a taken instance name:\n%s", lastLines(out, 20))
		}
	})

	t.Run("re-plan after apply has no changes", func(t *testing.T) {
		began := time.Now()
		out, _ := w.run([]int{0}, "plan", "-detailed-exitcode", "-parallelism=16")
		t.Logf("idempotent re-plan of %d resources: %s", total, time.Since(began).Round(time.Millisecond))
		if !strings.Contains(out, "No changes.") {
			t.Fatalf("plan after apply:\n%s", lastLines(out, 30))
		}
	})

	t.Run("changes made out of band are planned and repaired", func(t *testing.T) {
		// The member accepts the invitation terraform sent: not a change.
		s.acceptInvitation(t, member)
		uid := ""
		ms, err := sdk.Collect(ctx, owner.c.MembersPages(owner.org))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Email == member.email {
				uid = m.UserId
			}
		}
		if uid == "" {
			t.Fatalf("%s did not join", member.email)
		}
		// Out of band: a credential deleted, a role raised, a rule deleted.
		b, c := byName["fleet-b"].Id, byName["fleet-c"].Id
		victim, err := findCredential(ctx, owner, b, "dev-2")
		if err != nil {
			t.Fatal(err)
		}
		dr, err := owner.c.DeleteCredentialWithResponse(ctx, owner.org, b, victim.Id, nil)
		if err := sdk.Check(dr, err); err != nil {
			t.Fatal(err)
		}
		ur, err := owner.c.UpdateMemberWithResponse(ctx, owner.org, uid, nil, sdk.UpdateMemberJSONRequestBody{Role: "admin"})
		if err := sdk.Check(ur, err); err != nil {
			t.Fatal(err)
		}
		rules, err := sdk.Collect(ctx, owner.c.ACLRulesPages(owner.org, c))
		if err != nil {
			t.Fatal(err)
		}
		rr, err := owner.c.DeleteACLRuleWithResponse(ctx, owner.org, c, rules[0].Id, nil)
		if err := sdk.Check(rr, err); err != nil {
			t.Fatal(err)
		}

		// In the configuration: a new vault password (password_wo_version 2).
		w.write(fleetConfig(instances, perInstance, member.email, vault2))

		out, _ := w.run([]int{2}, "plan", "-detailed-exitcode", "-parallelism=16")
		add, ch, del := planChanges(t, out)
		if add != 1 || ch != 3 || del != 0 || !strings.Contains(out, `~ password_wo_version = 1 -> 2`) || !strings.Contains(out, `aerie_credential.dev["b-2"] will be created`) ||
			!strings.Contains(out, `aerie_acl_rules.r["c"] will be updated in-place`) || !strings.Contains(out, `~ role    = "admin" -> "viewer"`) {
			t.Fatalf("plan after out-of-band changes: +%d ~%d -%d\n%s", add, ch, del, lastLines(out, 60))
		}
		out, _ = w.run([]int{0}, "apply", "-auto-approve", "-parallelism=16")
		if !strings.Contains(out, "Resources: 1 added, 3 changed, 0 destroyed.") {
			t.Fatalf("repair apply:\n%s", lastLines(out, 20))
		}
		if _, err := findCredential(ctx, owner, b, "dev-2"); err != nil {
			t.Fatalf("dev-2 not restored: %v", err)
		}
		rules, err = sdk.Collect(ctx, owner.c.ACLRulesPages(owner.org, c))
		if err != nil || len(rules) != 4 || rules[0].Effect != "deny" {
			t.Fatalf("fleet-c rules after repair: %+v (%v)", rules, err)
		}
		if _, code := connectCode(t, s.mqtt, "from-vault@"+byName["fleet-a"].Id, vault1.password); code != 0x86 {
			t.Fatalf("the old vault password: connack 0x%02x, want 0x86 bad user name or password", code)
		}
		if _, code := connectCode(t, s.mqtt, "from-vault@"+byName["fleet-a"].Id, vault2.password); code != 0 {
			t.Fatalf("the new vault password: connack 0x%02x", code)
		}
		gm, err := owner.c.GetMemberWithResponse(ctx, owner.org, uid)
		if err := sdk.Check(gm, err); err != nil || gm.JSON200.Role != "viewer" {
			t.Fatalf("member role after repair: %v", err)
		}
	})

	t.Run("import of every resource type plans no changes", func(t *testing.T) {
		a, b := byName["fleet-a"].Id, byName["fleet-b"].Id
		var keyID string
		for k, err := range sdk.All(ctx, owner.c.APIKeysPages(owner.org)) {
			if err != nil {
				t.Fatal(err)
			}
			if k.Name == "ci" {
				keyID = k.Id
			}
		}
		imports := [][2]string{
			{`aerie_instance.i["c"]`, "fleet-c"}, // by name
			{`aerie_credential.dev["b-1"]`, b + "/dev-1"},
			{`aerie_acl_rules.r["b"]`, b},
			{`aerie_instance_quotas.q`, a},
			{`aerie_api_key.ci`, keyID},
			{`aerie_org_member.m`, member.email},
		}
		addrs := []string{"state", "rm"}
		for _, im := range imports {
			addrs = append(addrs, im[0])
		}
		w.run([]int{0}, addrs...)
		for _, im := range imports {
			out, _ := w.run([]int{0}, "import", im[0], im[1])
			if !strings.Contains(out, "Import successful!") {
				t.Fatalf("import %s %s:\n%s", im[0], im[1], out)
			}
		}
		out, code := w.run([]int{0, 2}, "plan", "-detailed-exitcode", "-parallelism=16")
		if code != 0 {
			t.Fatalf("plan after importing every resource type has changes:\n%s", lastLines(out, 40))
		}
	})

	t.Run("destroy leaves the org empty", func(t *testing.T) {
		out, _ := w.run([]int{0}, "destroy", "-auto-approve", "-parallelism=16")
		if !strings.Contains(out, fmt.Sprintf("Resources: %d destroyed.", total)) {
			t.Fatalf("destroy:\n%s", lastLines(out, 20))
		}
		insts, err := sdk.Collect(ctx, owner.c.InstancesPages(owner.org))
		if err != nil || len(insts) != 0 {
			t.Fatalf("instances after destroy: %d (%v)", len(insts), err)
		}
		keys, err := sdk.Collect(ctx, owner.c.APIKeysPages(owner.org))
		if err != nil || len(keys) != 1 || keys[0].Id != bootstrapKey {
			t.Fatalf("API keys after destroy: %+v (%v); want only the one terraform ran with", keys, err)
		}
		ms, err := sdk.Collect(ctx, owner.c.MembersPages(owner.org))
		if err != nil || len(ms) != 1 || ms[0].Email != owner.email {
			t.Fatalf("members after destroy: %+v (%v); want only the owner", ms, err)
		}
	})
}

// TestTerraformValidation shows terraform validate naming the offending
// attribute for every kind of invalid argument, before anything is changed.
func TestTerraformValidation(t *testing.T) {
	w := newWorkdir(t, &server{base: "http://127.0.0.1:1"}, "aer_x_y")
	w.write(`
terraform {
  required_providers {
    aerie = { source = "aeriemq/aerie" }
  }
}
resource "aerie_credential" "bad" {
  instance_id = "not-an-instance"
  username    = "has space"
}
resource "aerie_acl_rules" "bad" {
  instance_id = "i-0123456789"
  rules = [
    { effect = "allow", action = "all", filter = "ok/#" },
    { effect = "permit", action = "all", filter = "a/#/b" },
  ]
}
resource "aerie_instance_quotas" "bad" {
  instance_id     = "i-0123456789"
  max_connections = 0
}
resource "aerie_credential" "short" {
  instance_id = "i-0123456789"
  username    = "ok"
  password_wo = "short"
}
resource "aerie_api_key" "bad" {
  name   = "k"
  scopes = ["root"]
}
`)
	out, _ := w.run([]int{1}, "validate")
	for _, want := range []string{
		"Attribute instance_id must be an instance ID",
		"Attribute username may hold only letters",
		`Attribute rules[1].effect value must be one of`,
		`rules[1].filter`,
		"Attribute max_connections value must be at least 1",
		"Attribute password_wo string length must be between 12 and 72",
		`Attribute "password_wo_version" must be specified when "password_wo" is`,
		"Attribute scopes[Value(\"root\")] value must be one of",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("terraform validate:\n%s", out)
	}
}

func findCredential(ctx context.Context, a account, inst, username string) (sdk.Credential, error) {
	for c, err := range sdk.All(ctx, a.c.CredentialsPages(a.org, inst)) {
		if err != nil {
			return c, err
		}
		if c.Username == username {
			return c, nil
		}
	}
	return sdk.Credential{}, fmt.Errorf("no credential %s", username)
}

// connect connects an MQTT 5 device (closed at the end of the test).
func connect(t *testing.T, addr, user, pass string, onMsg func(*paho.Publish)) *paho.Client {
	t.Helper()
	c, code := dial(t, addr, user, pass, onMsg)
	if code != 0 {
		t.Fatalf("connect as %s: CONNACK reason 0x%02x", user, code)
	}
	return c
}

// connectCode connects and returns the CONNACK reason code (0: connected).
func connectCode(t *testing.T, addr, user, pass string) (*paho.Client, byte) {
	t.Helper()
	return dial(t, addr, user, pass, func(*paho.Publish) {})
}

func dial(t *testing.T, addr, user, pass string, onMsg func(*paho.Publish)) (*paho.Client, byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(p paho.PublishReceived) (bool, error) { onMsg(p.Packet); return true, nil }}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: "tf-device-" + user, CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(pass)})
	if err != nil {
		conn.Close()
		if ca == nil {
			t.Fatalf("connect as %s: %v", user, err)
		}
		return nil, ca.ReasonCode
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, 0
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestTerraformProviderConfig shows a missing API key and a bad URL reported
// on their attributes before anything is planned.
func TestTerraformProviderConfig(t *testing.T) {
	w := newWorkdir(t, &server{base: ""}, "")
	w.write(`
terraform {
  required_providers {
    aerie = { source = "aeriemq/aerie" }
  }
}
provider "aerie" {
  url = "ftp://aerie.example.com"
}
data "aerie_plans" "all" {}
`)
	out, _ := w.run([]int{1}, "plan")
	for _, want := range []string{"Invalid Aerie URL", "url must be an absolute http:// or https:// URL", "Missing Aerie API key", "AERIE_API_KEY"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("terraform plan:\n%s", out)
	}
}
