package forward

import (
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkDeliveryUnderFailures is the acceptance at full scale (the
// tests run it scaled down): 10,000 messages over 10 topics to a receiver
// failing 50 % of requests and to one down for 30 s that then returns
// (AERIE_BENCH_FORWARD_MESSAGES, AERIE_BENCH_OUTAGE_SECONDS): every
// message must arrive at least once and in order per topic at both.
// Reported: the flaky receiver's delivery rate and the time the other
// takes to catch up once back.
func BenchmarkDeliveryUnderFailures(b *testing.B) {
	n := envInt("AERIE_BENCH_FORWARD_MESSAGES", 10000)
	outage := time.Duration(envInt("AERIE_BENCH_OUTAGE_SECONDS", 30)) * time.Second
	const topics = 10
	for range b.N {
		flaky := newReceiver(b, "s1")
		flaky.setStatus(func(int) int {
			if rand.IntN(2) == 0 {
				return http.StatusServiceUnavailable
			}
			return 0
		})
		down := newReceiver(b, "s2")
		down.setStatus(func(int) int { return http.StatusBadGateway })
		nd := startNode(b, b.TempDir(), flaky, rule(b, flaky, "flaky", "s1"), rule(b, down, "down", "s2"))
		t0 := time.Now()
		nd.publish(b, topics, n, 0)
		waitFor(b, 10*time.Minute, "flaky deliveries", arrived(flaky, n))
		flakyRate := float64(n) / time.Since(t0).Seconds()
		time.Sleep(time.Until(t0.Add(outage)))
		down.setStatus(nil)
		t1 := time.Now()
		waitFor(b, 10*time.Minute, "deliveries after the outage", arrived(down, n))
		catchUp := time.Since(t1)
		for _, rc := range []*receiver{flaky, down} {
			evs, bad := rc.snapshot()
			if len(bad) > 0 {
				b.Fatalf("bad requests: %v", bad[0])
			}
			checkAll(b, evs, topics, n)
		}
		b.ReportMetric(flakyRate, "flaky50-msg/s")
		b.ReportMetric(catchUp.Seconds(), "catch-up-s")
		b.ReportMetric(float64(n)/catchUp.Seconds(), "catch-up-msg/s")
		nd.close(b)
	}
}
