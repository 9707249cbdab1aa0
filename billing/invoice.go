package billing

import (
	"fmt"
	"sort"
	"time"
)

// Period is one billing period: a UTC calendar month [Start, End).
type Period struct {
	Start, End time.Time
}

// PeriodOf returns the UTC month containing t.
func PeriodOf(t time.Time) Period {
	t = t.UTC()
	start := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	return Period{Start: start, End: start.AddDate(0, 1, 0)}
}

// ParsePeriod parses "YYYY-MM".
func ParsePeriod(s string) (Period, error) {
	t, err := time.Parse("2006-01", s)
	if err != nil {
		return Period{}, fmt.Errorf("period %q: want YYYY-MM", s)
	}
	return PeriodOf(t), nil
}

// String is "YYYY-MM".
func (p Period) String() string { return p.Start.Format("2006-01") }

// Seconds is the period's length.
func (p Period) Seconds() int64 { return int64(p.End.Sub(p.Start) / time.Second) }

// Usage is an org's metered usage over a period.
type Usage struct {
	ConnectionSeconds int64 `json:"connection_seconds"`
	MessageUnits      int64 `json:"message_units"`
	TransferBytes     int64 `json:"transfer_bytes"`
	StorageByteHours  int64 `json:"storage_byte_hours"`
}

// Segment is a plan in effect over [From, To) within a period.
type Segment struct {
	Plan     Plan
	From, To time.Time
}

// Line is one invoice line.
type Line struct {
	Kind        string `json:"kind"`
	Description string `json:"description"`
	Quantity    int64  `json:"quantity"`
	Unit        string `json:"unit"`
	AmountCents int64  `json:"amount_cents"`
}

// Line kinds.
const (
	LineBase            = "base"
	LineProrationCredit = "proration_credit"
	LineProrationCharge = "proration_charge"
	LineOverage         = "overage"
)

// prorate is amount × part / whole in cents, rounded half up (part ≤ whole).
func prorate(amount, part, whole int64) int64 {
	if whole <= 0 {
		return 0
	}
	return (2*amount*part + whole) / (2 * whole)
}

// ceilDiv is ⌈a / b⌉ for a ≥ 0, b > 0.
func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// Compute prices a period: the base fee of the plan the period started on,
// for each plan change a credit for the unused rest of the old plan and a
// charge for the rest of the new one (both to the second), and overage of
// the usage above the allowance of the plan in effect at the period's end,
// per started block. Segments must cover the period in order.
func Compute(p Period, segments []Segment, u Usage) (lines []Line, total int64, err error) {
	if len(segments) == 0 {
		return nil, 0, fmt.Errorf("no plan in effect for %s", p)
	}
	sort.SliceStable(segments, func(i, j int) bool { return segments[i].From.Before(segments[j].From) })
	first := segments[0].Plan
	lines = append(lines, Line{Kind: LineBase, Description: fmt.Sprintf("%s plan, %s", first.Name, p), Quantity: 1, Unit: "month", AmountCents: first.BaseCents})
	whole := p.Seconds()
	for i := 1; i < len(segments); i++ {
		prev, next := segments[i-1].Plan, segments[i].Plan
		at := segments[i].From
		rest := int64(p.End.Sub(at) / time.Second)
		if rest < 0 || rest > whole {
			return nil, 0, fmt.Errorf("plan change at %s outside %s", at, p)
		}
		if prev.BaseCents > 0 {
			lines = append(lines, Line{Kind: LineProrationCredit, Description: fmt.Sprintf("Unused %s plan from %s", prev.Name, at.UTC().Format(time.RFC3339)),
				Quantity: rest, Unit: "second", AmountCents: -prorate(prev.BaseCents, rest, whole)})
		}
		if next.BaseCents > 0 {
			lines = append(lines, Line{Kind: LineProrationCharge, Description: fmt.Sprintf("%s plan from %s", next.Name, at.UTC().Format(time.RFC3339)),
				Quantity: rest, Unit: "second", AmountCents: prorate(next.BaseCents, rest, whole)})
		}
	}
	last := segments[len(segments)-1].Plan
	type metric struct {
		name, unit, label string
		used, included    int64
	}
	for _, m := range []metric{
		{MetricConnectionMinutes, "connection-minute", "Connection minutes", ceilDiv(u.ConnectionSeconds, 60), last.Included.ConnectionMinutes},
		{MetricMessages, "message", "Messages", u.MessageUnits, last.Included.MessageUnits},
		{MetricTransfer, "byte", "Data transfer", u.TransferBytes, last.Included.TransferBytes},
		{MetricStorage, "byte-hour", "Storage", u.StorageByteHours, last.Included.StorageByteHours},
	} {
		over := m.used - m.included
		price, ok := last.Overage[m.name]
		if over <= 0 || !ok || price.Block <= 0 {
			continue
		}
		blocks := ceilDiv(over, price.Block)
		lines = append(lines, Line{Kind: LineOverage + "_" + m.name,
			Description: fmt.Sprintf("%s over the %s allowance: %d %ss (%d started blocks of %d)", m.label, last.Name, over, m.unit, blocks, price.Block),
			Quantity:    over, Unit: m.unit, AmountCents: blocks * price.Cents})
	}
	for _, l := range lines {
		total += l.AmountCents
	}
	return lines, total, nil
}
