package sessions

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/aeriemq/aerie/dataplane/store"
)

const (
	envNodeDir  = "AERIE_SESSIONS_NODE_DIR"
	envNodeAddr = "AERIE_SESSIONS_NODE_ADDR"
)

// TestHelperNode is the node process of TestCrashSafety: run with
// AERIE_SESSIONS_NODE_DIR and AERIE_SESSIONS_NODE_ADDR set, it serves MQTT
// on a SyncBatch store until it is killed. Without them it does nothing.
func TestHelperNode(t *testing.T) {
	dir, addr := os.Getenv(envNodeDir), os.Getenv(envNodeAddr)
	if dir == "" {
		return // not started as a node by TestCrashSafety
	}
	n, err := openNode(dir, addr, store.SyncBatch)
	if err != nil {
		fmt.Println("FAILED", err)
		os.Exit(1)
	}
	fmt.Println("READY", n.addr)
	select {}
}

// nodeProcess runs TestHelperNode as a subprocess.
type nodeProcess struct{ cmd *exec.Cmd }

func spawnNode(tb testing.TB, dir, addr string) *nodeProcess {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperNode$", "-test.count=1")
	cmd.Env = append(os.Environ(), envNodeDir+"="+dir, envNodeAddr+"="+addr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &nodeProcess{cmd: cmd}
	tb.Cleanup(p.kill)
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "READY") || strings.HasPrefix(l, "FAILED") {
				ready <- l
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case l := <-ready:
		if !strings.HasPrefix(l, "READY") {
			tb.Fatalf("node: %s", l)
		}
	case <-time.After(30 * time.Second):
		tb.Fatal("node did not start")
	}
	return p
}

// kill sends SIGKILL (kill -9) and reaps the process.
func (p *nodeProcess) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

func TestCrashSafety(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()

	node := spawnNode(t, dir, addr)
	sub := dialV3(t, addr, "crash-sub", false)
	sub.subscribe(t, "crash/+", 1)
	sub.disconnect()

	// Publish QoS1 under load from several publishers; kill -9 the node once
	// enough PUBACKs are in.
	const publishers, killAfter = 8, 3000
	var (
		acked   sync.Map // "topic seq" → true once PUBACKed
		nAcked  atomic.Int64
		wg      sync.WaitGroup
		topics  []string
		killed  = make(chan struct{})
		killOne sync.Once
	)
	for g := 0; g < publishers; g++ {
		topic := fmt.Sprintf("crash/p%d", g)
		topics = append(topics, topic)
		pub := dialV5(t, addr, fmt.Sprintf("crash-pub-%d", g), v5opts{clean: true})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				payload := fmt.Sprintf("%s-%d", topic, i)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := pub.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
				cancel()
				if err != nil {
					return // node killed
				}
				acked.Store(topic+" "+payload, true)
				if nAcked.Add(1) >= killAfter {
					killOne.Do(func() { node.kill(); close(killed) })
				}
			}
		}()
	}
	select {
	case <-killed:
	case <-time.After(60 * time.Second):
		t.Fatalf("only %d PUBACKs before the deadline", nAcked.Load())
	}
	wg.Wait()
	total := 0
	acked.Range(func(any, any) bool { total++; return true })
	t.Logf("node killed with -9 after %d PUBACKs", total)

	spawnNode(t, dir, addr)
	sub = dialV3(t, addr, "crash-sub", false)
	defer sub.disconnect()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := sub.in.snapshot()
		seen := map[string]bool{}
		for _, r := range got {
			seen[r.topic+" "+r.payload] = true
		}
		missing := 0
		var example string
		acked.Range(func(k, _ any) bool {
			if !seen[k.(string)] {
				missing++
				example = k.(string)
			}
			return true
		})
		if missing == 0 {
			// First deliveries are in publish order per topic.
			next := map[string]int{}
			for _, r := range got {
				var seq int
				if _, err := fmt.Sscanf(r.payload[len(r.topic)+1:], "%d", &seq); err != nil {
					t.Fatalf("payload %q: %v", r.payload, err)
				}
				if seq > next[r.topic] {
					t.Fatalf("%s: got %d before %d", r.topic, seq, next[r.topic])
				}
				if seq == next[r.topic] {
					next[r.topic]++
				}
			}
			t.Logf("all %d PUBACKed messages delivered after the restart (%d deliveries)", total, len(got))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d PUBACKed messages missing after the restart, e.g. %q", missing, total, example)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
