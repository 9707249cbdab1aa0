package gateway

import (
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/store"
)

// TestPahoFVT runs the eclipse/paho.mqtt.golang functional verification
// tests (its fvt_*_test.go, written for a broker on <addr>:1883) against
// an Aerie node whose default instance allows anonymous devices. The node
// listens on 127.0.0.2:1883 so a system broker on 127.0.0.1:1883 does not
// get in the way. Every FVT test runs except Test_OverLengthTopic (see
// below).
func TestPahoFVT(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs the 127.0.0.0/8 loopback range")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	st := configsync.NewState()
	snap := config.Snapshot{Revision: 1, NodeID: "n-fvt", Instances: []config.Instance{{ID: "i-fvt", OrgID: "o-fvt", Status: config.StatusRunning, AllowAnonymous: true,
		ACL: []config.ACLRule{{ID: "r-all", Effect: config.EffectAllow, Action: config.ActionAll, Filter: "#"}}}}}
	if err := st.Apply(config.Event{Revision: 1, Kind: config.KindSnapshot, Snapshot: &snap}); err != nil {
		t.Fatal(err)
	}
	// With the message store, as every node runs (persistent sessions live there).
	store, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(Options{MQTTAddr: "127.0.0.2:1883", Config: st, DefaultInstance: "i-fvt", Store: store, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { gw.Close(); store.Close() }()
	cmd := exec.Command(goBin, "test", "-count=1", "-v", "-timeout", "4m", "-run", "^Test_",
		// Aerie caps a topic level at 512 bytes (an isolation rule), so a
		// 65,535-byte topic is refused on purpose.
		"-skip", "^Test_OverLengthTopic$", "github.com/eclipse/paho.mqtt.golang")
	cmd.Env = append(os.Environ(), "TEST_FVT_ADDR=127.0.0.2")
	out, err := cmd.CombinedOutput()
	if d := os.Getenv("AERIE_FVT_LOG"); d != "" {
		_ = os.WriteFile(d, out, 0o644)
	}
	if err != nil {
		t.Fatalf("paho FVT failed: %v\n%s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}
