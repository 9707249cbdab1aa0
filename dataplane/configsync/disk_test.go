package configsync_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
)

// now is the fixed "current time" of the tests: credentials expiring before
// it are expired.
var now = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

func secretHash(password string) []byte {
	h := sha256.Sum256([]byte(password))
	return h[:]
}

func pubKey(seed byte) []byte {
	s := bytes.Repeat([]byte{seed}, ed25519.SeedSize)
	return ed25519.NewKeyFromSeed(s).Public().(ed25519.PublicKey)
}

// fixtureCred is one credential of the round-trip fixture with the outcome
// CheckPassword must give for its right password and client ID
// username+"-1".
type fixtureCred struct {
	instance, id, username, password string
	want                             configsync.AuthResult
}

// fixtureSnapshot builds a snapshot of three instances (running,
// provisioning, suspended) holding n credentials between them, some
// disabled, some expired or expiring later, some with client-ID patterns,
// plus ACL rules, token keys, revoked tokens and quotas.
func fixtureSnapshot(n int) (config.Event, []fixtureCred) {
	insts := []config.Instance{
		{ID: "i-alpha", OrgID: "o-1", Status: config.StatusRunning, AllowAnonymous: true,
			Quotas: config.Quotas{MaxConnections: 1000, MaxConnectsPerSecond: 50, MaxPublishPerSecond: 5000,
				MaxPublishPerSecondPerClient: 10, MaxBytesPerSecond: 1 << 30, MaxPayloadBytes: 256 << 10,
				MaxSubscriptionsPerClient: 100, MaxTopicLevels: 8, MaxRetainedMessages: 10000,
				MaxSessionExpirySeconds: 86400, MaxInflight: 64}},
		{ID: "i-beta", OrgID: "o-1", Status: config.StatusProvisioning,
			Quotas: config.Quotas{MaxConnections: 7, MaxPayloadBytes: 1024}},
		{ID: "i-gamma", OrgID: "o-2", Status: config.StatusSuspended},
	}
	past := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	future := time.Date(2099, 12, 31, 23, 59, 59, 0, time.UTC)
	var creds []fixtureCred
	for i := range n {
		ix := i % len(insts)
		c := config.Credential{
			ID:           fmt.Sprintf("c-%026d", i),
			Username:     fmt.Sprintf("dev-%05d", i),
			SecretSHA256: secretHash(fmt.Sprintf("pw-%05d", i)),
			Enabled:      i%7 != 3,
		}
		switch i % 5 {
		case 1:
			c.ExpiresAt = &past
		case 2:
			c.ExpiresAt = &future
		}
		switch i % 11 {
		case 4:
			c.ClientIDPattern = "${username}-*"
		case 8:
			c.ClientIDPattern = "fixed-client"
		}
		want := configsync.AuthOK
		switch {
		case insts[ix].Status == config.StatusSuspended:
			want = configsync.AuthInstanceUnavailable
		case !c.Enabled:
			want = configsync.AuthDisabled
		case c.ExpiresAt == &past:
			want = configsync.AuthExpired
		case c.ClientIDPattern == "fixed-client":
			want = configsync.AuthClientIDRefused
		}
		insts[ix].Credentials = append(insts[ix].Credentials, c)
		creds = append(creds, fixtureCred{insts[ix].ID, c.ID, c.Username, fmt.Sprintf("pw-%05d", i), want})
	}
	for ix := range insts {
		id := insts[ix].ID
		insts[ix].ACL = []config.ACLRule{
			{ID: "r-" + id + "-1", Effect: config.EffectAllow, Action: config.ActionAll, Filter: "devices/${username}/#"},
			{ID: "r-" + id + "-2", Effect: config.EffectDeny, Action: config.ActionPublish, Filter: "$SYS/#"},
			{ID: "r-" + id + "-3", Effect: config.EffectAllow, Action: config.ActionSubscribe, Filter: "broadcast/+",
				CredentialID: insts[ix].Credentials[0].ID},
		}
		insts[ix].TokenKeys = []config.TokenKey{
			{KID: "k-" + id + "-1", Algorithm: "EdDSA", PublicKey: pubKey(byte(ix*2 + 1))},
			{KID: "k-" + id + "-2", Algorithm: "EdDSA", PublicKey: pubKey(byte(ix*2 + 2))},
		}
		insts[ix].RevokedTokens = []config.RevokedToken{
			{JTI: "j-" + id + "-1", ExpiresAt: time.Date(2031, 1, 1, 0, 0, 0, 123456789, time.UTC)},
			{JTI: "j-" + id + "-2", ExpiresAt: time.Date(2032, 2, 2, 2, 2, 2, 0, time.UTC)},
		}
	}
	return config.Event{Revision: 1234, Kind: config.KindSnapshot,
		Snapshot: &config.Snapshot{Revision: 1234, NodeID: "n-test", Instances: insts}}, creds
}

// normalize sorts everything a Snapshot returns in map order (ACL rules
// keep their order: it is part of the state).
func normalize(s config.Snapshot) config.Snapshot {
	slices.SortFunc(s.Instances, func(a, b config.Instance) int { return strings.Compare(a.ID, b.ID) })
	for i := range s.Instances {
		in := &s.Instances[i]
		slices.SortFunc(in.Credentials, func(a, b config.Credential) int { return strings.Compare(a.ID, b.ID) })
		slices.SortFunc(in.TokenKeys, func(a, b config.TokenKey) int { return strings.Compare(a.KID, b.KID) })
		slices.SortFunc(in.RevokedTokens, func(a, b config.RevokedToken) int { return strings.Compare(a.JTI, b.JTI) })
	}
	return s
}

func mustApply(t testing.TB, s *configsync.State, evs ...config.Event) {
	t.Helper()
	for _, ev := range evs {
		if err := s.Apply(ev); err != nil {
			t.Fatalf("apply %d %s: %v", ev.Revision, ev.Kind, err)
		}
	}
}

// diffSnapshots reports the first difference between two normalized
// snapshots in words (reflect.DeepEqual alone says nothing about where).
func diffSnapshots(t *testing.T, got, want config.Snapshot) {
	t.Helper()
	got, want = normalize(got), normalize(want)
	if reflect.DeepEqual(got, want) {
		return
	}
	if got.Revision != want.Revision || got.NodeID != want.NodeID || len(got.Instances) != len(want.Instances) {
		t.Fatalf("snapshot header: got rev %d node %q %d instances, want rev %d node %q %d instances",
			got.Revision, got.NodeID, len(got.Instances), want.Revision, want.NodeID, len(want.Instances))
	}
	for i := range want.Instances {
		g, w := got.Instances[i], want.Instances[i]
		if len(g.Credentials) != len(w.Credentials) {
			t.Fatalf("instance %s: %d credentials, want %d", w.ID, len(g.Credentials), len(w.Credentials))
		}
		for j := range w.Credentials {
			if !reflect.DeepEqual(g.Credentials[j], w.Credentials[j]) {
				t.Fatalf("instance %s credential %d:\n got %+v\nwant %+v", w.ID, j, g.Credentials[j], w.Credentials[j])
			}
		}
		g.Credentials, w.Credentials = nil, nil
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("instance %s:\n got %+v\nwant %+v", w.ID, g, w)
		}
	}
	t.Fatalf("snapshots differ")
}

func TestSnapshotFileRoundTrip(t *testing.T) {
	ev, creds := fixtureSnapshot(10_000)
	src := configsync.NewState()
	mustApply(t, src, ev)
	// Deltas after the snapshot must be saved too.
	rotated := creds[0] // i-alpha, OK before
	deleted := creds[3] // i-alpha
	added := fixtureCred{"i-beta", "c-added", "dev-added", "pw-added", configsync.AuthOK}
	exp := now.Add(time.Hour).Truncate(time.Second)
	mustApply(t, src,
		config.Event{Revision: 1240, Kind: config.KindCredentialPut, InstanceID: rotated.instance, Credential: &config.Credential{
			ID: rotated.id, Username: rotated.username, SecretSHA256: secretHash("new-secret"), Enabled: true, ExpiresAt: &exp}},
		config.Event{Revision: 1241, Kind: config.KindCredentialDel, InstanceID: deleted.instance, ID: deleted.id},
		config.Event{Revision: 1242, Kind: config.KindCredentialPut, InstanceID: added.instance, Credential: &config.Credential{
			ID: added.id, Username: added.username, SecretSHA256: secretHash(added.password), Enabled: true, ClientIDPattern: "${username}-?"}},
		config.Event{Revision: 1243, Kind: config.KindACLDelete, InstanceID: "i-alpha", ID: "r-i-alpha-2"},
		config.Event{Revision: 1244, Kind: config.KindACLPut, InstanceID: "i-alpha", ACLRule: &config.ACLRule{
			ID: "r-late", Effect: config.EffectDeny, Action: config.ActionSubscribe, Filter: "secret/#"}},
		config.Event{Revision: 1245, Kind: config.KindTokenRevoke, InstanceID: "i-beta", RevokedToken: &config.RevokedToken{
			JTI: "j-late", ExpiresAt: time.Date(2033, 3, 3, 3, 3, 3, 3, time.UTC)}},
		config.Event{Revision: 1246, Kind: config.KindTokenKeyPut, InstanceID: "i-gamma", TokenKey: &config.TokenKey{
			KID: "k-late", Algorithm: "EdDSA", PublicKey: pubKey(99)}},
		config.Event{Revision: 1247, Kind: config.KindQuotasPut, InstanceID: "i-beta", Quotas: &config.Quotas{MaxConnections: 77, MaxInflight: 3}},
		config.Event{Revision: 1250, Kind: config.KindCredentialPut, InstanceID: "i-alpha", Credential: &config.Credential{
			ID: "c-temp", Username: "dev-temp", SecretSHA256: secretHash("pw-temp"), Enabled: true}},
		config.Event{Revision: 1251, Kind: config.KindCredentialDel, InstanceID: "i-alpha", ID: "c-temp"},
	)
	if got := src.Credentials(); got != 10_000 {
		t.Fatalf("source state holds %d credentials, want 10000", got)
	}

	path := filepath.Join(t.TempDir(), "sub", configsync.SnapshotFile)
	if err := src.SaveFile(path); err != nil {
		t.Fatal(err)
	}
	dst := configsync.NewState()
	var heard []configsync.Change
	dst.OnChange(func(c configsync.Change) { heard = append(heard, c) })
	if err := dst.LoadFile(path); err != nil {
		t.Fatal(err)
	}

	if got, want := dst.Revision(), int64(1251); got != want || src.Revision() != want {
		t.Fatalf("revision: loaded %d, source %d, want %d", got, src.Revision(), want)
	}
	if len(heard) != 1 || heard[0].Kind != config.KindSnapshot || heard[0].Revision != 1251 {
		t.Fatalf("listener heard %+v, want one snapshot change at 1251", heard)
	}
	if got := dst.Credentials(); got != 10_000 {
		t.Fatalf("loaded %d credentials, want 10000", got)
	}
	want := src.Snapshot()
	got := dst.Snapshot()
	if got.NodeID != "n-test" {
		t.Fatalf("node ID %q", got.NodeID)
	}
	diffSnapshots(t, got, want)

	// Every credential answers the same, and as the fixture says.
	creds[0], creds[3] = fixtureCred{rotated.instance, rotated.id, rotated.username, "new-secret", configsync.AuthOK}, deleted
	creds[3].want = configsync.AuthBadCredentials
	creds = append(creds, added, fixtureCred{"i-alpha", "", "dev-temp", "pw-temp", configsync.AuthBadCredentials})
	counts := map[configsync.AuthResult]int{}
	for i, c := range creds {
		client := c.username + "-1"
		gotID, gotRes := dst.CheckPassword(c.instance, c.username, []byte(c.password), client, now)
		srcID, srcRes := src.CheckPassword(c.instance, c.username, []byte(c.password), client, now)
		if gotRes != c.want || srcRes != c.want || gotID != srcID {
			t.Fatalf("credential %d %s/%s: loaded (%q, %d), source (%q, %d), want result %d",
				i, c.instance, c.username, gotID, gotRes, srcID, srcRes, c.want)
		}
		if gotRes == configsync.AuthOK && gotID != c.id {
			t.Fatalf("credential %s: id %q, want %q", c.username, gotID, c.id)
		}
		counts[gotRes]++
		if i%97 == 0 && c.want != configsync.AuthInstanceUnavailable {
			if _, res := dst.CheckPassword(c.instance, c.username, []byte(c.password+"x"), client, now); res != configsync.AuthBadCredentials {
				t.Fatalf("credential %s with a wrong password: %d, want AuthBadCredentials", c.username, res)
			}
			counts[-1]++
		}
	}
	for _, r := range []configsync.AuthResult{configsync.AuthOK, configsync.AuthDisabled, configsync.AuthExpired,
		configsync.AuthClientIDRefused, configsync.AuthInstanceUnavailable, configsync.AuthBadCredentials, -1} {
		if counts[r] == 0 {
			t.Errorf("the sample never produced result %d: %v", r, counts)
		}
	}
	// The rotated credential's expiry survived (second precision).
	if _, res := dst.CheckPassword(rotated.instance, rotated.username, []byte("new-secret"), "x", exp); res != configsync.AuthExpired {
		t.Errorf("rotated credential at its expiry: %d, want AuthExpired", res)
	}
	if _, res := dst.CheckPassword(added.instance, added.username, []byte(added.password), "dev-added-12", now); res != configsync.AuthClientIDRefused {
		t.Errorf("pattern ${username}-? with a two-character suffix: %d, want AuthClientIDRefused", res)
	}
	if _, res := dst.CheckPassword("i-nope", "dev-00000", []byte("pw-00000"), "", now); res != configsync.AuthUnknownInstance {
		t.Errorf("unknown instance: %d", res)
	}
	// Children and settings through their own accessors.
	if !dst.TokenRevoked("i-beta", "j-late") || !dst.TokenRevoked("i-alpha", "j-i-alpha-1") || dst.TokenRevoked("i-alpha", "j-late") {
		t.Error("revoked tokens not loaded")
	}
	if k, ok := dst.TokenKey("i-gamma", "k-late"); !ok || !bytes.Equal(k.PublicKey, pubKey(99)) || k.Algorithm != "EdDSA" {
		t.Errorf("token key k-late: %+v %v", k, ok)
	}
	var ids []string
	for _, r := range dst.ACL("i-alpha") {
		ids = append(ids, r.ID)
	}
	if want := []string{"r-i-alpha-1", "r-i-alpha-3", "r-late"}; !slices.Equal(ids, want) {
		t.Errorf("ACL of i-alpha: %v, want %v (in order)", ids, want)
	}
	if in, ok := dst.Instance("i-beta"); !ok || in.Quotas != (config.Quotas{MaxConnections: 77, MaxInflight: 3}) ||
		in.Status != config.StatusProvisioning || in.OrgID != "o-1" || in.Credentials != nil {
		t.Errorf("instance i-beta: %+v %v", in, ok)
	}
	if in, _ := dst.Instance("i-alpha"); !in.AllowAnonymous || in.Quotas.MaxSessionExpirySeconds != 86400 {
		t.Errorf("instance i-alpha: %+v", in)
	}

	// A loaded state keeps following deltas from its revision.
	mustApply(t, dst, config.Event{Revision: 1252, Kind: config.KindCredentialDel, InstanceID: added.instance, ID: added.id})
	if _, res := dst.CheckPassword(added.instance, added.username, []byte(added.password), "dev-added-1", now); res != configsync.AuthBadCredentials || dst.Revision() != 1252 {
		t.Errorf("delta after load: %d at revision %d", res, dst.Revision())
	}
}

// smallState is a state with a little of everything, for byte-level tests.
func smallState(t testing.TB) *configsync.State {
	ev, _ := fixtureSnapshot(12)
	s := configsync.NewState()
	mustApply(t, s, ev)
	return s
}

func savedBytes(t *testing.T, s *configsync.State) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := s.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo reported %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

func TestSnapshotFileCorrupt(t *testing.T) {
	ev, creds := fixtureSnapshot(300)
	src := configsync.NewState()
	mustApply(t, src, ev)
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := src.SaveFile(good); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("AERIECFG\x01")) {
		t.Fatalf("file starts %q", data[:min(len(data), 9)])
	}
	if err := configsync.NewState().LoadFile(good); err != nil {
		t.Fatalf("the intact file does not load: %v", err)
	}

	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(data)) }
	cases := map[string][]byte{
		"flipped middle byte": edit(func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }),
		"flipped bit in hash": edit(func(b []byte) []byte { b[len(b)*3/4] ^= 0x01; return b }),
		"flipped revision":    edit(func(b []byte) []byte { b[9] ^= 0x02; return b }),
		"flipped checksum":    edit(func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }),
		"truncated in half":   data[:len(data)/2],
		"truncated checksum":  data[:len(data)-2],
		"no checksum":         data[:len(data)-4],
		"header only":         data[:9],
		"half magic":          data[:4],
		"wrong magic":         edit(func(b []byte) []byte { copy(b, "AERIECFX"); return b }),
		"wrong version":       edit(func(b []byte) []byte { b[8] = 2; return b }),
		"trailing byte":       append(bytes.Clone(data), 0),
		"empty":               {},
		"text":                []byte("{\"revision\": 5}\n"),
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
			if err := os.WriteFile(path, bad, 0o600); err != nil {
				t.Fatal(err)
			}

			// An empty state stays empty.
			empty := configsync.NewState()
			heard := 0
			empty.OnChange(func(configsync.Change) { heard++ })
			err := empty.LoadFile(path)
			if !errors.Is(err, configsync.ErrCorruptSnapshot) {
				t.Fatalf("LoadFile: %v, want ErrCorruptSnapshot", err)
			}
			if empty.Revision() != 0 || empty.Credentials() != 0 || len(empty.Snapshot().Instances) != 0 || heard != 0 {
				t.Fatalf("empty state changed: rev %d, %d credentials, %d instances, %d changes heard",
					empty.Revision(), empty.Credentials(), len(empty.Snapshot().Instances), heard)
			}

			// A state with content keeps it.
			prev := smallState(t)
			before := prev.Snapshot()
			prev.OnChange(func(configsync.Change) { heard++ })
			if err := prev.LoadFile(path); !errors.Is(err, configsync.ErrCorruptSnapshot) {
				t.Fatalf("LoadFile into a full state: %v, want ErrCorruptSnapshot", err)
			}
			diffSnapshots(t, prev.Snapshot(), before)
			if heard != 0 {
				t.Fatalf("%d changes heard", heard)
			}
			c := creds[0] // in smallState too: same generator
			if _, res := prev.CheckPassword(c.instance, c.username, []byte(c.password), c.username+"-1", now); res != configsync.AuthOK {
				t.Fatalf("previous credential after a failed load: %d", res)
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		s := smallState(t)
		err := s.LoadFile(filepath.Join(dir, "nope"))
		if !errors.Is(err, os.ErrNotExist) || errors.Is(err, configsync.ErrCorruptSnapshot) {
			t.Fatalf("LoadFile of a missing file: %v, want os.ErrNotExist", err)
		}
		if s.Revision() != 1234 || s.Credentials() != 12 {
			t.Fatalf("state changed: rev %d, %d credentials", s.Revision(), s.Credentials())
		}
	})
}

// Every single-byte change of a snapshot is caught, and never half-applied.
func TestSnapshotEveryByteFlipDetected(t *testing.T) {
	ev, _ := fixtureSnapshot(5)
	ev.Snapshot.Instances = ev.Snapshot.Instances[:2] // two instances, four credentials
	tiny := configsync.NewState()
	mustApply(t, tiny, ev)
	data := savedBytes(t, tiny)
	if err := configsync.NewState().LoadFrom(bytes.NewReader(data)); err != nil {
		t.Fatalf("intact snapshot: %v", err)
	}
	s := configsync.NewState()
	b := bytes.Clone(data)
	for i := range data {
		x := []byte{0x01, 0x80, 0xff, 0x10}[i%4]
		b[i] ^= x
		if err := s.LoadFrom(bytes.NewReader(b)); !errors.Is(err, configsync.ErrCorruptSnapshot) {
			t.Fatalf("byte %d of %d xor %#x: %v, want ErrCorruptSnapshot", i, len(data), x, err)
		}
		b[i] ^= x
		if s.Revision() != 0 || s.Credentials() != 0 {
			t.Fatalf("byte %d xor %#x: state changed (rev %d)", i, x, s.Revision())
		}
	}
	for n := range len(data) {
		if err := s.LoadFrom(bytes.NewReader(data[:n])); !errors.Is(err, configsync.ErrCorruptSnapshot) {
			t.Fatalf("first %d of %d bytes: %v, want ErrCorruptSnapshot", n, len(data), err)
		}
	}
	if s.Revision() != 0 || s.Credentials() != 0 {
		t.Fatalf("state changed by truncated files (rev %d)", s.Revision())
	}
}

// A damaged file that claims a huge credential count is rejected without
// allocating for the claim.
func TestSnapshotHugeCountRejectedCheaply(t *testing.T) {
	var b []byte
	b = append(b, "AERIECFG\x01"...)
	b = binary.AppendVarint(b, 7)
	b = binary.AppendUvarint(b, 1)
	b = append(b, 'n')
	b = binary.AppendUvarint(b, 1) // one instance
	meta := `{"id":"i-x","status":"running"}`
	b = binary.AppendUvarint(b, uint64(len(meta)))
	b = append(b, meta...)
	// Credentials claimed; none follow. (Up to 1<<28 passes the format's
	// bound; 1<<22 is enough to see maps sized for the claim, about
	// 1.1 GB, without risking the test machine.)
	b = binary.AppendUvarint(b, 1<<22)
	b = append(b, 0, 0, 0, 0)

	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	s := configsync.NewState()
	err := s.LoadFrom(bytes.NewReader(b))
	runtime.ReadMemStats(&m1)
	if !errors.Is(err, configsync.ErrCorruptSnapshot) {
		t.Fatalf("LoadFrom: %v, want ErrCorruptSnapshot", err)
	}
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 64<<20 {
		t.Fatalf("a %d-byte file made LoadFrom allocate %d MB", len(b), alloc>>20)
	}
	if s.Revision() != 0 || s.Credentials() != 0 {
		t.Fatal("state changed")
	}
}

// SaveFile replaces the file atomically and leaves no temporary files.
func TestSaveFileReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, configsync.SnapshotFile)
	s := smallState(t)
	if err := s.SaveFile(path); err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, config.Event{Revision: 2000, Kind: config.KindInstanceDelete, InstanceID: "i-alpha"})
	if err := s.SaveFile(path); err != nil {
		t.Fatal(err)
	}
	l := configsync.NewState()
	if err := l.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if l.Revision() != 2000 {
		t.Fatalf("revision %d, want 2000", l.Revision())
	}
	if _, ok := l.Instance("i-alpha"); ok {
		t.Fatal("deleted instance came back")
	}
	if _, ok := l.Instance("i-beta"); !ok {
		t.Fatal("instance i-beta lost")
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != configsync.SnapshotFile {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v, want only %s", names, configsync.SnapshotFile)
	}
}
