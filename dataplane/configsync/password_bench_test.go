package configsync_test

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/tenancy"
)

// passwordState holds one instance with a generated-secret credential
// ("gen") and a tenant-supplied (bcrypt) one ("own").
func passwordState(t testing.TB) *configsync.State {
	t.Helper()
	phc, err := tenancy.HashDevicePassword("own-password-0001")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("generated-secret-0001"))
	st := configsync.NewState()
	snap := config.Snapshot{Revision: 1, NodeID: "n", Instances: []config.Instance{{ID: "i-1", OrgID: "o-1", Status: config.StatusRunning,
		Credentials: []config.Credential{
			{ID: "c-1", Username: "gen", SecretSHA256: sum[:], Enabled: true},
			{ID: "c-2", Username: "own", PasswordHash: phc, Enabled: true},
		}}}}
	if err := st.Apply(config.Event{Revision: 1, Kind: config.KindSnapshot, Snapshot: &snap}); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestCheckPasswordSchemes: the node checks both schemes, per credential.
func TestCheckPasswordSchemes(t *testing.T) {
	st := passwordState(t)
	now := time.Now()
	for _, c := range []struct {
		user, pw string
		want     configsync.AuthResult
	}{
		{"gen", "generated-secret-0001", configsync.AuthOK},
		{"gen", "generated-secret-0002", configsync.AuthBadCredentials},
		{"own", "own-password-0001", configsync.AuthOK},
		{"own", "own-password-0002", configsync.AuthBadCredentials},
		{"own", "", configsync.AuthBadCredentials},
	} {
		if _, got := st.CheckPassword("i-1", c.user, []byte(c.pw), "x", now); got != c.want {
			t.Errorf("%s/%q: %v, want %v", c.user, c.pw, got, c.want)
		}
	}
	// A bad hash is refused when the config arrives.
	bad := config.Event{Revision: 2, Kind: config.KindCredentialPut, InstanceID: "i-1",
		Credential: &config.Credential{ID: "c-3", Username: "bad", PasswordHash: "plain", Enabled: true}}
	if err := st.Apply(bad); err == nil {
		t.Fatal("a credential with a non-bcrypt password hash was accepted")
	}
}

// BenchmarkSuppliedPasswordCheck is the connect-rate cost of each scheme:
// the CPU time of one password check on CONNECT — bcrypt (cost
// tenancy.DeviceBcryptCost) for a tenant-supplied password the node has
// not yet accepted this run ("bcrypt": first connect, or a wrong
// password), the same password again ("bcrypt-cached"), and SHA-256 for a
// generated one — and the checks per second one core sustains.
func BenchmarkSuppliedPasswordCheck(b *testing.B) {
	now := time.Now()
	for _, c := range []struct{ name, user, pw string }{{"bcrypt", "own", "own-password-0001"}, {"bcrypt-cached", "own", "own-password-0001"},
		{"sha256", "gen", "generated-secret-0001"}} {
		b.Run(c.name, func(b *testing.B) {
			n := 100000
			if c.name == "bcrypt" {
				n = 10
			}
			st := passwordState(b)
			if c.name != "bcrypt" {
				st.CheckPassword("i-1", c.user, []byte(c.pw), "x", now) // warm the cache
			}
			var total time.Duration
			for i := 0; i < n; i++ {
				if c.name == "bcrypt" {
					st = passwordState(b) // a fresh node: nothing cached
				}
				t0 := time.Now()
				if _, res := st.CheckPassword("i-1", c.user, []byte(c.pw), "x", now); res != configsync.AuthOK {
					b.Fatal(res)
				}
				total += time.Since(t0)
			}
			per := total / time.Duration(n)
			b.ReportMetric(float64(per.Nanoseconds()), "ns/check")
			b.ReportMetric(float64(time.Second)/float64(per), "checks/s/core")
		})
	}
}

// TestSuppliedPasswordCache: the cache of accepted supplied passwords
// never accepts another password nor outlives a new hash.
func TestSuppliedPasswordCache(t *testing.T) {
	st := passwordState(t)
	now := time.Now()
	if _, r := st.CheckPassword("i-1", "own", []byte("own-password-0001"), "x", now); r != configsync.AuthOK {
		t.Fatal(r)
	}
	if _, r := st.CheckPassword("i-1", "own", []byte("own-password-0002"), "x", now); r != configsync.AuthBadCredentials {
		t.Fatalf("another password after a cached one: %v", r)
	}
	phc, err := tenancy.HashDevicePassword("own-password-0002")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(config.Event{Revision: 2, Kind: config.KindCredentialPut, InstanceID: "i-1",
		Credential: &config.Credential{ID: "c-2", Username: "own", PasswordHash: phc, Enabled: true}}); err != nil {
		t.Fatal(err)
	}
	if _, r := st.CheckPassword("i-1", "own", []byte("own-password-0001"), "x", now); r != configsync.AuthBadCredentials {
		t.Fatalf("the old password after rotation: %v", r)
	}
	if _, r := st.CheckPassword("i-1", "own", []byte("own-password-0002"), "x", now); r != configsync.AuthOK {
		t.Fatalf("the new password: %v", r)
	}
}
