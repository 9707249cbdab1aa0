package gctune

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNext(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   state
		rate float64
		want state
	}{
		{"idle stays idle under the threshold", state{}, 999, state{}},
		{"idle turns busy at the threshold", state{}, 1000, state{busy: true}},
		{"busy stays busy between the thresholds", state{busy: true, calm: 3}, 500, state{busy: true}},
		{"busy counts calm intervals", state{busy: true, calm: 3}, 100, state{busy: true, calm: 4}},
		{"busy turns idle after enough calm", state{busy: true, calm: 9}, 0, state{}},
		{"a burst resets the calm count", state{busy: true, calm: 9}, 5000, state{busy: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := next(tc.in, tc.rate, 1000, 10); got != tc.want {
				t.Fatalf("next(%+v, %v) = %+v, want %+v", tc.in, tc.rate, got, tc.want)
			}
		})
	}
}

// TestRun: the tuner sets Idle at start, Busy once messages flow faster
// than BusyRate, and Idle again after Calm quiet intervals.
func TestRun(t *testing.T) {
	var count atomic.Int64
	var mu sync.Mutex
	var set []int
	tu := &Tuner{Idle: 25, Busy: 100, BusyRate: 1000, Calm: 3, Interval: 20 * time.Millisecond,
		Count: count.Load, Set: func(v int) int { mu.Lock(); set = append(set, v); mu.Unlock(); return 0 }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tu.Run(ctx); close(done) }()
	seen := func(want []int) bool {
		mu.Lock()
		defer mu.Unlock()
		if len(set) != len(want) {
			return false
		}
		for i := range want {
			if set[i] != want[i] {
				return false
			}
		}
		return true
	}
	wait := func(what string, want []int, feed func()) {
		for deadline := time.Now().Add(5 * time.Second); !seen(want); {
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("%s: set %v, want %v", what, set, want)
			}
			feed()
			time.Sleep(5 * time.Millisecond)
		}
	}
	wait("start", []int{25}, func() {})
	wait("busy", []int{25, 100}, func() { count.Add(100) }) // 20,000 msg/s
	wait("calm again", []int{25, 100, 25}, func() {})
	cancel()
	<-done
}
