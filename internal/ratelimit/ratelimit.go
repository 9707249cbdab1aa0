// Package ratelimit keeps one token bucket (golang.org/x/time/rate) per key,
// for throttles such as login attempts per email and per client address,
// and holds the API's and the console's shared throttle rules (LoginLimits,
// AbuseLimits).
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Keyed is a set of token buckets, one per key, all with the same rate and
// burst. Idle buckets are dropped once full again.
type Keyed struct {
	mu      sync.Mutex
	every   time.Duration
	burst   int
	buckets map[string]*rate.Limiter
	lastGC  time.Time
}

// New allows burst events at once per key, refilled one every `every`.
func New(every time.Duration, burst int) *Keyed {
	return &Keyed{every: every, burst: burst, buckets: map[string]*rate.Limiter{}}
}

// Allow takes one token for key at now. When none is left it returns false
// and how long until one is.
func (k *Keyed) Allow(key string, now time.Time) (bool, time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.gc(now)
	l, ok := k.buckets[key]
	if !ok {
		l = rate.NewLimiter(rate.Every(k.every), k.burst)
		k.buckets[key] = l
	}
	r := l.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

func (k *Keyed) gc(now time.Time) {
	if now.Sub(k.lastGC) < time.Minute {
		return
	}
	k.lastGC = now
	for key, l := range k.buckets {
		if l.TokensAt(now) >= float64(k.burst) {
			delete(k.buckets, key)
		}
	}
}
