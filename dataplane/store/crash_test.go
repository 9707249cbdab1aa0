package store

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

const crashEnv = "AERIE_STORE_CRASH_DIR"

// TestCrashRecovery kills a process that appended durably (its unlogged
// index still in the memtable) and checks that reopening serves everything
// from the log.
func TestCrashRecovery(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashRecovery$")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f := &fixture{t: t, s: s, ctx: context.Background()}
	if n := s.rebuilt.Load(); n == 0 {
		t.Fatal("nothing was re-indexed: the crash did not lose the unlogged index")
	}
	if got := f.payloads("i", "c/+"); len(got) != 300 || got[0] != "m0" || got[299] != "m299" {
		t.Fatalf("wildcard queue after crash has %d entries", len(got))
	}
	if got := f.payloads("i", "c/7"); len(got) != 30 {
		t.Fatalf("c/7 after crash has %d entries, want 30", len(got))
	}
	if st := s.Stats("i"); st.LogBytes == 0 {
		t.Fatal("stored bytes lost")
	}
	if sess, err := s.LoadSession(f.ctx, "i", "sub"); err != nil || sess.Subscriptions["c/+"].QoS != 1 {
		t.Fatalf("session after crash = %+v, %v", sess, err)
	}
}

// crashChild appends and exits without Close (no memtable flush).
func crashChild(dir string) {
	s, err := Open(dir, Options{Sync: SyncBatch})
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	ctx := context.Background()
	if err := s.SaveSession(ctx, Session{Instance: "i", ClientID: "sub", ProtocolVersion: 4, Expiry: NeverExpire}); err != nil {
		os.Exit(3)
	}
	if _, err := s.Subscribe(ctx, "i", "sub", Subscription{Filter: "c/+", QoS: 1}); err != nil {
		os.Exit(4)
	}
	for k := range 300 {
		if _, err := s.Append(ctx, []Message{{Instance: "i", Topic: fmt.Sprintf("c/%d", k%10), QoS: 1, Payload: []byte(fmt.Sprint("m", k))}}); err != nil {
			os.Exit(5)
		}
	}
	os.Exit(0)
}
