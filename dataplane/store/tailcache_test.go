package store

import "testing"

// TestTailCacheBudget: the tail caches keep a queue's newest entries within
// their shared byte budget (each queue at least `size` entries), serve what
// they cover, report what they do not, and give memory back when a queue is
// dropped.
func TestTailCacheBudget(t *testing.T) {
	var c tailCaches
	const budget, size = 256 << 10, 16
	c.init(8, size, budget)
	payload := make([]byte, 1024)
	qa, qb := QueueRef{"i", "a"}, QueueRef{"i", "b"}
	if _, _, ok := c.get(qa, 0, 10); !ok {
		t.Fatal("a new cache covers everything indexed from now on")
	}
	c.get(qb, 0, 10)
	for off := uint64(1); off <= 2000; off++ {
		c.add([]indexEntry{{"i", "a", off, &Message{Topic: "a", Payload: payload}}, {"i", "b", off, &Message{Topic: "b", Payload: payload}}}, off)
		if c.total > budget+2*2*size*entryCost(Entry{Message: &Message{Topic: "a", Payload: payload}}) {
			t.Fatalf("after %d entries the caches hold %d bytes, budget %d", off, c.total, budget)
		}
	}
	ents, _, ok := c.get(qa, 1999, 10)
	if !ok || len(ents) != 1 || ents[0].Offset != 2000 {
		t.Fatalf("newest entry: %v %v", ents, ok)
	}
	if _, _, ok := c.get(qa, 1, 10); ok {
		t.Fatal("an entry trimmed from the cache is served from it")
	}
	a := c.m[qa]
	if n := len(a.ents); n < size || a.bytes > budget/2 {
		t.Fatalf("queue a keeps %d entries, %d bytes (budget per queue %d)", n, a.bytes, budget/2)
	}
	c.drop(qa)
	c.drop(qb)
	if c.total != 0 {
		t.Fatalf("%d bytes accounted after dropping every queue", c.total)
	}
}
