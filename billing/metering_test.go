package billing

import (
	"context"
	"errors"
	"math/rand"
	"testing"
	"time"
)

// orgMap resolves instance orgs for metering tests (the tenancy service's
// own lookup is tested in tenancy).
type orgMap map[string]string

func (m orgMap) InstanceOrgs(_ context.Context, ids []string) (map[string]string, error) {
	out := map[string]string{}
	for _, id := range ids {
		if o, ok := m[id]; ok {
			out[id] = o
		}
	}
	return out, nil
}

func TestMeterIngest(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	setup := func(t *testing.T) *Meter {
		b := newBilling(t)
		b.org(t, "o-a", t0.AddDate(0, -1, 0))
		b.org(t, "o-b", t0.AddDate(0, -1, 0))
		return NewMeter(b.db.Pool, orgMap{"i-a": "o-a", "i-b": "o-b"}, nil)
	}
	report := func(seq int64, from time.Time, in int64) UsageReport {
		return UsageReport{NodeID: "n-1", Seq: seq, From: from, To: from.Add(10 * time.Second),
			Instances: []InstanceUsage{{InstanceID: "i-a", MessagesIn: in, BytesIn: in * 100, MessageUnitsIn: in,
				Connections: seq, Drops: map[string]int64{"acl": 1, "weird": 2}}}}
	}

	t.Run("a report sent twice counts once", func(t *testing.T) {
		m := setup(t)
		if dup, err := m.Ingest(ctx, report(1, t0, 5)); err != nil || dup {
			t.Fatalf("first: dup %v err %v", dup, err)
		}
		if dup, err := m.Ingest(ctx, report(1, t0, 5)); err != nil || !dup {
			t.Fatalf("replay: dup %v err %v", dup, err)
		}
		pts, err := m.Series(ctx, "o-a", "i-a", t0, t0.Add(time.Minute), 10*time.Second, t0.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if len(pts) != 6 || pts[0].MessagesIn != 5 || pts[0].BytesIn != 500 || pts[0].Drops["acl"] != 1 || pts[0].Drops["other"] != 2 {
			t.Fatalf("points %+v", pts)
		}
		for _, p := range pts[1:] {
			if p.MessagesIn != 0 {
				t.Errorf("empty step has data: %+v", p)
			}
		}
	})

	t.Run("late reports land in the period they describe", func(t *testing.T) {
		m := setup(t)
		if _, err := m.Ingest(ctx, report(2, t0.Add(time.Hour), 3)); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Ingest(ctx, report(1, t0, 4)); err != nil { // arrives after seq 2
			t.Fatal(err)
		}
		pts, err := m.Series(ctx, "o-a", "i-a", t0, t0.Add(2*time.Hour), time.Hour, t0.Add(2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if len(pts) != 2 || pts[0].MessagesIn != 4 || pts[1].MessagesIn != 3 {
			t.Fatalf("hourly points %+v", pts)
		}
		// The gauge keeps the newest report's value, whatever the arrival order.
		if pts[1].Connections != 2 {
			t.Errorf("gauge %d, want 2", pts[1].Connections)
		}
	})

	t.Run("another org reads nothing", func(t *testing.T) {
		m := setup(t)
		if _, err := m.Ingest(ctx, report(1, t0, 9)); err != nil {
			t.Fatal(err)
		}
		pts, err := m.Series(ctx, "o-b", "i-a", t0, t0.Add(time.Minute), time.Minute, t0.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pts {
			if p.MessagesIn != 0 {
				t.Fatalf("org B sees org A's usage: %+v", p)
			}
		}
	})

	t.Run("bad reports are refused", func(t *testing.T) {
		m := setup(t)
		bad := []UsageReport{
			{Seq: 1, From: t0, To: t0},
			{NodeID: "n", Seq: 0, From: t0, To: t0},
			{NodeID: "n", Seq: 1, From: t0, To: t0.Add(-time.Second)},
			{NodeID: "n", Seq: 1, From: t0, To: t0, Instances: []InstanceUsage{{InstanceID: "i-a", MessagesIn: -1}}},
			{NodeID: "n", Seq: 1, From: t0, To: t0, Instances: []InstanceUsage{{MessagesIn: 1}}},
		}
		for i, r := range bad {
			if _, err := m.Ingest(ctx, r); !errors.Is(err, ErrInvalidReport) {
				t.Errorf("bad report %d: %v", i, err)
			}
		}
		if _, err := m.Series(ctx, "o-a", "i-a", t0, t0.Add(time.Minute), 7*time.Second, t0); !errors.Is(err, ErrInvalidRange) {
			t.Errorf("step 7s: %v", err)
		}
		if _, err := m.Series(ctx, "o-a", "i-a", t0, t0.Add(24*time.Hour), 10*time.Second, t0); !errors.Is(err, ErrInvalidRange) {
			t.Errorf("8640 points: %v", err)
		}
	})

	t.Run("metering is exact under random duplicates and late arrival", func(t *testing.T) {
		m := setup(t)
		rng := rand.New(rand.NewSource(42))
		type sent struct {
			r    UsageReport
			msgs int64
		}
		var unique []sent
		var want int64
		for node := 1; node <= 3; node++ {
			for seq := int64(1); seq <= 40; seq++ {
				n := rng.Int63n(1000)
				from := t0.Add(time.Duration(rng.Intn(6*360)) * 10 * time.Second) // anywhere in 6 h
				r := UsageReport{NodeID: "n-" + string(rune('0'+node)), Seq: seq, From: from, To: from.Add(10 * time.Second),
					Instances: []InstanceUsage{{InstanceID: "i-a", MessagesIn: n, MessageUnitsIn: n}}}
				unique = append(unique, sent{r, n})
				want += n
			}
		}
		// Deliver each report one to three times, shuffled.
		var deliveries []UsageReport
		for _, s := range unique {
			for k := 0; k <= rng.Intn(3); k++ {
				deliveries = append(deliveries, s.r)
			}
		}
		rng.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })
		for _, r := range deliveries {
			if _, err := m.Ingest(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		for _, step := range []time.Duration{10 * time.Second, time.Minute, time.Hour} {
			pts, err := m.Series(ctx, "o-a", "i-a", t0, t0.Add(6*time.Hour), step*max(1, time.Duration(6*time.Hour/step/2000+1)), t0.Add(6*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			var got int64
			for _, p := range pts {
				got += p.MessagesIn
			}
			if got != want {
				t.Errorf("step %s: metered %d messages, sent %d unique", step, got, want)
			}
		}
		b := &Service{db: m.db, plans: NewPlans(m.db)}
		u, err := b.Usage(ctx, "o-a", PeriodOf(t0))
		if err != nil || u.MessageUnits != want {
			t.Errorf("billing usage %d (%v), want %d", u.MessageUnits, err, want)
		}
	})
}
