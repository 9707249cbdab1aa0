package main_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/aeriemq/aerie/internal/mqttload"
)

// durableOptions describe one durable QoS 1 run.
type durableOptions struct {
	publishers int // clean-session publishers, one topic each (load/<k>)
	messages   int // per publisher
	payload    int // bytes
	window     int // QoS 1 publishes in flight per publisher
	subscriber string
	cred       func(int) (string, string)
}

// durableResult is what one run measured.
type durableResult struct {
	sent, acked      int64
	received, dups   int64 // distinct messages the subscriber got; redeliveries
	outOfOrder       int64
	pubDur, deliDur  time.Duration // first publish to last PUBACK; to last new delivery
	pubRate, delRate float64       // msg/s
}

func (r durableResult) String() string {
	return fmt.Sprintf("%d published, %d acknowledged in %s (%.0f msg/s); %d delivered (%.2f%%) in %s (%.0f msg/s), %d duplicates, %d out of order",
		r.sent, r.acked, r.pubDur.Round(time.Millisecond), r.pubRate, r.received, 100*float64(r.received)/float64(max(r.sent, 1)),
		r.deliDur.Round(time.Millisecond), r.delRate, r.dups, r.outOfOrder)
}

func durableClient(addr, id string, clean bool, window int, user, pass string) (mqtt3.Client, error) {
	opts := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetUsername(user).SetPassword(pass).
		SetProtocolVersion(4).SetCleanSession(clean).SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(true).
		SetKeepAlive(60 * time.Second).SetWriteTimeout(30 * time.Second).SetMaxResumePubInFlight(window)
	c := mqtt3.NewClient(opts)
	t := c.Connect()
	if !t.WaitTimeout(15*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("connect %s: %v", id, t.Error())
	}
	return c, nil
}

// durableQoS1 runs o.publishers paho clients, each publishing o.messages
// QoS 1 messages with a sliding window of o.window unacknowledged
// publishes, to a broker where one persistent session (clean session
// false, QoS 1 on load/+) is subscribed and online, so every message is one
// the broker must keep for a session. The publish rate counts PUBACKs; the
// subscriber checks that every message arrives.
func durableQoS1(ctx context.Context, addr string, o durableOptions) (durableResult, error) {
	total := int64(o.publishers * o.messages)
	var mu sync.Mutex
	seen := make([][]bool, o.publishers)
	last := make([]int, o.publishers)
	for k := range seen {
		seen[k] = make([]bool, o.messages)
		last[k] = -1
	}
	var received, dups, outOfOrder atomic.Int64
	var lastAt atomic.Int64
	u, p := o.cred(1000)
	sub, err := durableClient(addr, o.subscriber, false, o.window, u, p)
	if err != nil {
		return durableResult{}, err
	}
	defer func() {
		// Leave no persistent session behind to collect a later run's messages.
		sub.Disconnect(100)
		if c, err := durableClient(addr, o.subscriber, true, o.window, u, p); err == nil {
			c.Disconnect(100)
		}
	}()
	t := sub.Subscribe("load/+", 1, func(_ mqtt3.Client, m mqtt3.Message) {
		b := m.Payload()
		if len(b) < 6 {
			return
		}
		pub, seq := int(b[0])<<8|int(b[1]), int(b[2])<<24|int(b[3])<<16|int(b[4])<<8|int(b[5])
		if pub >= o.publishers || seq >= o.messages {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[pub][seq] {
			dups.Add(1)
			return
		}
		seen[pub][seq] = true
		if seq < last[pub] {
			outOfOrder.Add(1)
		}
		last[pub] = max(last[pub], seq)
		received.Add(1)
		lastAt.Store(time.Now().UnixNano())
	})
	if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return durableResult{}, fmt.Errorf("subscribe: %v", t.Error())
	}

	pubs := make([]mqtt3.Client, o.publishers)
	for k := range pubs {
		u, p := o.cred(k)
		c, err := durableClient(addr, fmt.Sprintf("%s-pub-%d", o.subscriber, k), true, o.window, u, p)
		if err != nil {
			return durableResult{}, err
		}
		defer c.Disconnect(0)
		pubs[k] = c
	}

	var sent, acked atomic.Int64
	errs := make(chan error, o.publishers)
	var wg sync.WaitGroup
	start := time.Now()
	for k, c := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := fmt.Sprintf("load/%d", k)
			inflight := make([]mqtt3.Token, o.window)
			wait := func(t mqtt3.Token) error {
				if !t.WaitTimeout(60*time.Second) || t.Error() != nil {
					return fmt.Errorf("publisher %d: PUBACK: %v", k, t.Error())
				}
				acked.Add(1)
				return nil
			}
			for i := 0; i < o.messages; i++ {
				if ctx.Err() != nil {
					errs <- ctx.Err()
					return
				}
				slot := i % o.window
				if t := inflight[slot]; t != nil {
					if err := wait(t); err != nil {
						errs <- err
						return
					}
				}
				b := make([]byte, max(o.payload, 6))
				b[0], b[1] = byte(k>>8), byte(k)
				b[2], b[3], b[4], b[5] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
				inflight[slot] = c.Publish(topic, 1, false, b)
				sent.Add(1)
			}
			for i := o.messages; i < o.messages+o.window; i++ {
				if t := inflight[i%o.window]; t != nil {
					if err := wait(t); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	pubEnd := time.Now()
	close(errs)
	for err := range errs {
		return durableResult{}, err
	}

	// Wait for the subscriber to catch up while it makes progress.
	for stall := time.Now(); received.Load() < total && time.Since(stall) < 10*time.Second; {
		before := received.Load()
		select {
		case <-ctx.Done():
			return durableResult{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if received.Load() != before {
			stall = time.Now()
		}
	}
	r := durableResult{sent: sent.Load(), acked: acked.Load(), received: received.Load(), dups: dups.Load(),
		outOfOrder: outOfOrder.Load(), pubDur: pubEnd.Sub(start)}
	if at := lastAt.Load(); at > 0 {
		r.deliDur = time.Unix(0, at).Sub(start)
	}
	r.pubRate = float64(r.acked) / r.pubDur.Seconds()
	if r.deliDur > 0 {
		r.delRate = float64(r.received) / r.deliDur.Seconds()
	}
	return r, nil
}

// startMosquittoPersistent starts mosquitto on a free loopback port with
// `persistence true` and persistence_location in a temp dir, every other
// persistence setting at its default (autosave_interval 1800: the in-memory
// database is written every 30 minutes and at shutdown), the same password
// auth as benchBrokers, and max_queued_messages raised to maxQueued so a
// session that falls behind is not dropped messages.
// (mqttload.StartMosquitto's Persistence option always adds
// autosave_on_changes with autosave_interval 1, measured separately.)
func startMosquittoPersistent(b *testing.B, maxQueued int) brokerUnderTest {
	b.Helper()
	dir := b.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	pw := filepath.Join(dir, "passwd")
	if err := os.WriteFile(pw, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("mosquitto_passwd", "-b", pw, "dev", "secret-password-1").CombinedOutput(); err != nil {
		b.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	conf := fmt.Sprintf("listener %d 127.0.0.1\nlog_dest file %s/mosquitto.log\nmax_connections -1\nmax_queued_messages %d\n"+
		"persistence true\npersistence_location %s/\nallow_anonymous false\npassword_file %s\n",
		ln.Addr().(*net.TCPAddr).Port, dir, maxQueued, dir, pw)
	if os.Geteuid() == 0 {
		conf += "user root\n" // as mqttload.StartMosquitto: the temp dir is private to root
	}
	cf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
	}
	cmd := exec.Command(bin, "-c", cf)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if err := mqttload.WaitListening(context.Background(), addr, 10*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "mosquitto.log"))
		b.Fatalf("%v: %s", err, log)
	}
	return brokerUnderTest{name: "mosquitto", addr: addr, pid: cmd.Process.Pid,
		cred: func(int) (string, string) { return "dev", "secret-password-1" }}
}

// BenchmarkDurableQoS1 is issue 6's acceptance benchmark (b) end to end:
// durable QoS 1 publish throughput over real sockets, 10 publishers × 100 B
// payloads, each keeping a window of 64 publishes in flight (as paho clients
// do), a fixed number of messages, in the same run against
//
//   - aerie: an Aerie node (`aerie serve`) with its RocksDB store at the
//     default --store-sync=batch: a PUBACK follows the group commit's fsync;
//   - mosquitto: Mosquitto with `persistence true` and persistence_location in
//     a temp dir (autosave at its default, every 30 minutes and at shutdown);
//   - mosquitto-autosave: Mosquitto with persistence saved after every change
//     (mqttload's Persistence: autosave_on_changes, autosave_interval 1), the
//     closest Mosquitto gets to durable-before-acknowledged. It rewrites its
//     whole database each time, so its rate falls as a session's queue grows.
//
// One persistent session (clean session false, QoS 1 on load/+) is online
// during each run, so each message is one the broker keeps for a session,
// and it must receive every message. <broker>-msg/s counts PUBACKs per
// second (first publish to last PUBACK); x-mosquitto and
// x-mosquitto-autosave are the aerie rate over theirs. Goal: aerie ≥ 50,000
// msg/s on the 2-core reference machine.
//
//	go test ./cmd/aerie -run '^$' -bench DurableQoS1 -benchtime=1x -v
//
// AERIE_BENCH_DURABLE_MESSAGES (per publisher, default 2000) and
// AERIE_BENCH_WINDOW (default 64) change the load.
func BenchmarkDurableQoS1(b *testing.B) {
	o := durableOptions{publishers: 10, messages: envInt("AERIE_BENCH_DURABLE_MESSAGES", 2000), payload: 100,
		window: envInt("AERIE_BENCH_WINDOW", 64)}
	maxQueued := 2 * o.publishers * o.messages
	aerie := benchAerie(b)
	mosq := startMosquittoPersistent(b, maxQueued)
	ctx := context.Background()
	m, err := mqttload.StartMosquitto(ctx, b.TempDir(), mqttload.MosquittoOptions{Persistence: true,
		Users: map[string]string{"dev": "secret-password-1"}, MaxQueued: maxQueued})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.Stop)
	mosqAutosave := brokerUnderTest{name: "mosquitto-autosave", addr: m.Addr, pid: m.Pid(), cred: mosq.cred}
	b.ResetTimer()
	for i := range b.N {
		rate := map[string]float64{}
		for _, br := range []brokerUnderTest{aerie, mosq, mosqAutosave} {
			o.subscriber, o.cred = fmt.Sprintf("durable-%d", i), br.cred
			rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			r, err := durableQoS1(rctx, br.addr, o)
			cancel()
			if err != nil {
				b.Fatalf("%s: %v", br.name, err)
			}
			b.Logf("%s: %s", br.name, r)
			if r.acked != r.sent || r.received < r.sent {
				b.Errorf("%s lost QoS 1 messages: %s", br.name, r)
			}
			rate[br.name] = r.pubRate
			b.ReportMetric(r.pubRate, br.name+"-msg/s")
			b.ReportMetric(r.delRate, br.name+"-delivered-msg/s")
		}
		b.ReportMetric(rate["aerie"]/max(rate["mosquitto"], 1), "x-mosquitto")
		b.ReportMetric(rate["aerie"]/max(rate["mosquitto-autosave"], 1), "x-mosquitto-autosave")
	}
}
