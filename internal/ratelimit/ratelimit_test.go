package ratelimit

import (
	"testing"
	"time"
)

func TestKeyedThrottlesOneKeyOnly(t *testing.T) {
	now := time.Unix(1000, 0)
	k := New(time.Minute, 3)
	for i := range 3 {
		if ok, _ := k.Allow("a", now); !ok {
			t.Fatalf("attempt %d refused within burst", i)
		}
	}
	ok, wait := k.Allow("a", now)
	if ok || wait <= 0 || wait > time.Minute {
		t.Fatalf("4th attempt: ok=%v wait=%v", ok, wait)
	}
	if ok, _ := k.Allow("b", now); !ok {
		t.Fatal("another key was throttled")
	}
	if ok, _ := k.Allow("a", now.Add(time.Minute)); !ok {
		t.Fatal("not refilled after the interval")
	}
}
