package configsync_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/nodelink"
)

// flakySource is down (refusing watches) until up is set; then a watch
// sends one heartbeat and stays open.
type flakySource struct {
	mu       sync.Mutex
	up       bool
	attempts int
	acks     []time.Time
}

func (f *flakySource) setUp(v bool) {
	f.mu.Lock()
	f.up = v
	f.mu.Unlock()
}

func (f *flakySource) Watch(ctx context.Context, since int64, fn func(nodelink.Event) error) error {
	f.mu.Lock()
	f.attempts++
	up := f.up
	f.mu.Unlock()
	if !up {
		return errors.New("dial tcp: connection refused")
	}
	if err := fn(nodelink.Event{Kind: nodelink.KindHeartbeat, Revision: since}); err != nil {
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}

func (f *flakySource) Ack(context.Context, nodelink.Ack) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.up {
		return errors.New("dial tcp: connection refused")
	}
	f.acks = append(f.acks, time.Now())
	return nil
}

func (f *flakySource) ReportUsage(context.Context, nodelink.UsageReport) error { return nil }
func (f *flakySource) RuleSecret(context.Context, string) ([]byte, error)      { return nil, nil }

// TestClientResyncsWithinASecond: after a 5 s outage (long enough for an
// uncapped exponential backoff to wait several seconds) the client is
// following again within ~1 s of the control plane answering, has told it
// so (an ack) without waiting for the heartbeat period, did not hammer it
// meanwhile, and reports itself out of sync past the readiness bound.
func TestClientResyncsWithinASecond(t *testing.T) {
	src := &flakySource{}
	c, err := configsync.NewClient(configsync.Options{Source: src, State: configsync.NewState(), Dir: t.TempDir(), Log: quietLog(), AckInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	stop := runClient(t, c)
	defer stop()
	time.Sleep(5 * time.Second)
	if c.Connected() || c.OutOfSyncFor() < 4*time.Second {
		t.Fatalf("down: connected %v, out of sync for %s", c.Connected(), c.OutOfSyncFor())
	}
	if err := c.InSync(2 * time.Second); err == nil {
		t.Fatal("InSync(2s) is nil after 5 s without the control plane")
	}
	if err := c.InSync(time.Minute); err != nil {
		t.Fatalf("InSync(1m) after 5 s: %v", err)
	}
	src.mu.Lock()
	attempts := src.attempts
	src.mu.Unlock()
	if attempts < 5 || attempts > 25 {
		t.Fatalf("%d watch attempts in 5 s: want a retry about every second at most, never a tight loop", attempts)
	}
	upAt := time.Now()
	src.setUp(true)
	waitFor(t, 3*time.Second, "the stream open again", c.Connected)
	took := time.Since(upAt)
	t.Logf("reconnected %s after the control plane came back (%d attempts during a 5 s outage)", took.Round(time.Millisecond), attempts)
	if took > 1200*time.Millisecond {
		t.Fatalf("reconnected %s after the control plane came back; want ≤ ~1 s", took)
	}
	waitFor(t, time.Second, "an ack on reconnecting", func() bool { src.mu.Lock(); defer src.mu.Unlock(); return len(src.acks) > 0 })
	if c.OutOfSyncFor() != 0 || c.InSync(time.Millisecond) != nil {
		t.Fatalf("following again but out of sync for %s", c.OutOfSyncFor())
	}
	// Down again: the bound counts from the moment the stream closed.
	src.setUp(false)
	stop()
	time.Sleep(300 * time.Millisecond)
	if d := c.OutOfSyncFor(); d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("out of sync for %s, 300 ms after the stream closed", d)
	}
}
