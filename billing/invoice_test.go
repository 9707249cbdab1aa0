package billing

import (
	"testing"
	"time"
)

func TestPeriods(t *testing.T) {
	cases := []struct {
		at         string
		start, end string
		seconds    int64
	}{
		{"2026-11-24T10:00:00Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", 30 * 86400},
		{"2026-12-31T23:59:59Z", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z", 31 * 86400},
		{"2028-02-29T12:00:00Z", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z", 29 * 86400}, // leap year
		{"2027-02-10T00:00:00Z", "2027-02-01T00:00:00Z", "2027-03-01T00:00:00Z", 28 * 86400},
		{"2026-03-01T00:30:00+01:00", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", 28 * 86400}, // UTC, not local
	}
	for _, c := range cases {
		at, _ := time.Parse(time.RFC3339, c.at)
		p := PeriodOf(at)
		if p.Start.Format(time.RFC3339) != c.start || p.End.Format(time.RFC3339) != c.end || p.Seconds() != c.seconds {
			t.Errorf("PeriodOf(%s) = %s..%s (%d s); want %s..%s (%d s)", c.at, p.Start.Format(time.RFC3339), p.End.Format(time.RFC3339), p.Seconds(), c.start, c.end, c.seconds)
		}
	}
	if _, err := ParsePeriod("2026-13"); err == nil {
		t.Error("ParsePeriod accepted month 13")
	}
	if p, err := ParsePeriod("2028-02"); err != nil || p.Seconds() != 29*86400 {
		t.Errorf("ParsePeriod(2028-02) = %v, %v", p, err)
	}
}

func TestProrate(t *testing.T) {
	cases := []struct{ amount, part, whole, want int64 }{
		{9900, 15 * 86400, 30 * 86400, 4950},
		{1500, 1, 3, 500},
		{1000, 1, 3, 333}, // 333.33 → 333
		{1000, 2, 3, 667}, // 666.67 → 667
		{1, 1, 2, 1},      // half rounds up
		{9900, 0, 100, 0},
		{9900, 100, 100, 9900},
	}
	for _, c := range cases {
		if got := prorate(c.amount, c.part, c.whole); got != c.want {
			t.Errorf("prorate(%d, %d, %d) = %d, want %d", c.amount, c.part, c.whole, got, c.want)
		}
	}
}

var (
	testDev = Plan{ID: "developer", Name: "Developer", BaseCents: 1500,
		Included: Included{ConnectionMinutes: 1000, MessageUnits: 1000, TransferBytes: 1000, StorageByteHours: 1000},
		Overage:  map[string]Price{MetricMessages: {Block: 100, Cents: 7}, MetricConnectionMinutes: {Block: 10, Cents: 1}}}
	testPro = Plan{ID: "pro", Name: "Pro", BaseCents: 9900,
		Included: Included{ConnectionMinutes: 5000, MessageUnits: 5000, TransferBytes: 5000, StorageByteHours: 5000},
		Overage:  map[string]Price{MetricMessages: {Block: 100, Cents: 5}}}
	testFree = Plan{ID: "free", Name: "Free", Included: Included{MessageUnits: 10}}
)

func TestCompute(t *testing.T) {
	nov := PeriodOf(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	mid := time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC) // 15 of 30 days left
	t.Run("base fee only", func(t *testing.T) {
		lines, total, err := Compute(nov, []Segment{{testDev, nov.Start, nov.End}}, Usage{MessageUnits: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(lines) != 1 || total != 1500 || lines[0].Kind != LineBase {
			t.Fatalf("lines %+v total %d", lines, total)
		}
	})
	t.Run("overage per started block", func(t *testing.T) {
		lines, total, err := Compute(nov, []Segment{{testDev, nov.Start, nov.End}}, Usage{MessageUnits: 1201, ConnectionSeconds: 60*1000 + 1})
		if err != nil {
			t.Fatal(err)
		}
		// messages: 201 over → 3 blocks × 7 = 21; connection minutes: ⌈60001/60⌉ = 1001 → 1 over → 1 block × 1.
		if total != 1500+21+1 {
			t.Fatalf("total %d, lines %+v", total, lines)
		}
	})
	t.Run("upgrade mid-month prorates to the second", func(t *testing.T) {
		lines, total, err := Compute(nov, []Segment{{testDev, nov.Start, mid}, {testPro, mid, nov.End}}, Usage{MessageUnits: 4000})
		if err != nil {
			t.Fatal(err)
		}
		want := []int64{1500, -750, 4950}
		if len(lines) != 3 {
			t.Fatalf("lines %+v", lines)
		}
		for i, w := range want {
			if lines[i].AmountCents != w {
				t.Errorf("line %d = %d, want %d (%+v)", i, lines[i].AmountCents, w, lines[i])
			}
		}
		if total != 1500-750+4950 {
			t.Errorf("total %d", total)
		}
		// 4,000 messages are over Developer's allowance but within Pro's.
		for _, l := range lines {
			if l.Kind == LineOverage+"_"+MetricMessages {
				t.Errorf("overage billed against the old plan: %+v", l)
			}
		}
	})
	t.Run("free plan is capped, never billed", func(t *testing.T) {
		_, total, err := Compute(nov, []Segment{{testFree, nov.Start, nov.End}}, Usage{MessageUnits: 1e9})
		if err != nil || total != 0 {
			t.Fatalf("total %d err %v", total, err)
		}
	})
	t.Run("no plan is an error", func(t *testing.T) {
		if _, _, err := Compute(nov, nil, Usage{}); err == nil {
			t.Fatal("want error")
		}
	})
}
