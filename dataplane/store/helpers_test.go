package store

import (
	"context"
	"sync"
	"testing"
	"time"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is the setup bundle: a store in a temp dir with a fake clock.
type fixture struct {
	t     testing.TB
	dir   string
	opts  Options
	clock *clock
	s     *Store
	ctx   context.Context
}

func newFixture(t testing.TB, opts Options) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir(), clock: &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, ctx: context.Background()}
	if opts.Now == nil {
		opts.Now = f.clock.Now
	}
	if opts.SyncDelay == 0 {
		opts.SyncDelay = 200 * time.Microsecond
	}
	f.opts = opts
	f.open()
	t.Cleanup(func() {
		if f.s != nil {
			f.s.Close()
		}
	})
	return f
}

func (f *fixture) open() {
	f.t.Helper()
	s, err := Open(f.dir, f.opts)
	if err != nil {
		f.t.Fatalf("Open: %v", err)
	}
	f.s = s
}

func (f *fixture) reopen() {
	f.t.Helper()
	if err := f.s.Close(); err != nil {
		f.t.Fatalf("Close: %v", err)
	}
	f.s = nil
	f.open()
}

func (f *fixture) publish(inst, topic, payload string) uint64 {
	f.t.Helper()
	offs, err := f.s.Append(f.ctx, []Message{{Instance: inst, Topic: topic, QoS: 1, Payload: []byte(payload)}})
	if err != nil {
		f.t.Fatalf("Append: %v", err)
	}
	return offs[0]
}

// payloads pulls a whole queue from the start and returns the payloads.
func (f *fixture) payloads(inst, queue string) []string {
	f.t.Helper()
	var out []string
	after := uint64(0)
	for {
		ents, err := f.s.Pull(f.ctx, inst, queue, after, 100)
		if err != nil {
			f.t.Fatalf("Pull: %v", err)
		}
		if len(ents) == 0 {
			return out
		}
		for _, e := range ents {
			out = append(out, string(e.Message.Payload))
		}
		after = ents[len(ents)-1].Offset
	}
}

func (f *fixture) session(inst, client string, filters ...string) {
	f.t.Helper()
	if err := f.s.SaveSession(f.ctx, Session{Instance: inst, ClientID: client, ProtocolVersion: 5, Expiry: time.Hour}); err != nil {
		f.t.Fatalf("SaveSession: %v", err)
	}
	for _, fl := range filters {
		if _, err := f.s.Subscribe(f.ctx, inst, client, Subscription{Filter: fl, QoS: 1}); err != nil {
			f.t.Fatalf("Subscribe %s: %v", fl, err)
		}
	}
}

// lqKeys counts the raw index entries of a queue.
func (f *fixture) lqKeys(inst, queue string) int {
	f.t.Helper()
	p := lqPrefix(inst, queue)
	it := f.s.db.NewIteratorCF(f.s.ro, f.s.lq)
	defer it.Close()
	n := 0
	for it.Seek(p); it.ValidForPrefix(p); it.Next() {
		n++
	}
	return n
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
