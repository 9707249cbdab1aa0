// Package gctune adapts the Go garbage collector's target (GOGC) to a
// data-plane node's load. An idle node's heap is mostly long-lived
// connection state, so a low GOGC keeps resident memory near the live size;
// a busy node allocates per message, so a higher GOGC spends less CPU on
// collection. The tuner switches between the two on the message rate, with
// hysteresis so it does not flap.
package gctune

import (
	"context"
	"time"
)

// Tuner switches GOGC between Idle and Busy.
type Tuner struct {
	Idle, Busy int     // GOGC values (e.g. 25 and 100)
	BusyRate   float64 // messages per second at which the node counts as busy
	Calm       int     // intervals below BusyRate/4 before going back to Idle
	Interval   time.Duration
	Count      func() int64   // monotonic count of messages handled
	Set        func(int) int  // debug.SetGCPercent
	OnChange   func(gogc int) // optional: told of each switch (logging)
}

// state is the tuner's mode and how long the load has been low.
type state struct {
	busy bool
	calm int
}

// next is the mode after an interval at rate messages per second.
func next(s state, rate, busyRate float64, calm int) state {
	switch {
	case rate >= busyRate:
		return state{busy: true}
	case !s.busy:
		return s
	case rate < busyRate/4:
		if s.calm+1 >= calm {
			return state{}
		}
		return state{busy: true, calm: s.calm + 1}
	default:
		return state{busy: true} // between the thresholds: stay busy
	}
}

// Run sets Idle, then adjusts every Interval until ctx ends.
func (t *Tuner) Run(ctx context.Context) {
	if t.Interval <= 0 {
		t.Interval = time.Second
	}
	if t.Calm <= 0 {
		t.Calm = 10
	}
	t.Set(t.Idle)
	tick := time.NewTicker(t.Interval)
	defer tick.Stop()
	var s state
	last, at := t.Count(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			n := t.Count()
			rate := float64(n-last) / max(now.Sub(at).Seconds(), 1e-3)
			last, at = n, now
			ns := next(s, rate, t.BusyRate, t.Calm)
			if ns.busy != s.busy {
				v := t.Idle
				if ns.busy {
					v = t.Busy
				}
				t.Set(v)
				if t.OnChange != nil {
					t.OnChange(v)
				}
			}
			s = ns
		}
	}
}
