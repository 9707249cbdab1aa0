package mqtttopic

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// eval runs one function of the package on a row's arguments and renders
// the result as a string.
func eval(t *testing.T, op, a, b string, n int) string {
	t.Helper()
	switch op {
	case "CheckTopic":
		return errName(CheckTopic(a))
	case "CheckFilter":
		return errName(CheckFilter(a))
	case "ValidTopic":
		return fmt.Sprint(ValidTopic(a, n))
	case "ValidFilter":
		return fmt.Sprint(ValidFilter(a, n))
	case "Reserved":
		return fmt.Sprint(Reserved(a))
	case "HasWildcard":
		return fmt.Sprint(HasWildcard(a))
	case "LevelsOK":
		return fmt.Sprint(LevelsOK(a, n))
	case "Match": // filter a, topic b
		return fmt.Sprint(Match(a, b))
	case "MatchLevels":
		return fmt.Sprint(MatchLevels(a, b))
	case "Covers":
		return fmt.Sprint(Covers(a, b))
	case "Intersects": // symmetric: both orders must agree
		ab, ba := Intersects(a, b), Intersects(b, a)
		if ab != ba {
			return fmt.Sprintf("asymmetric %v/%v", ab, ba)
		}
		return fmt.Sprint(ab)
	case "SplitShared":
		g, f, ok := SplitShared(a)
		return fmt.Sprintf("%s|%s|%v", g, f, ok)
	case "Mount": // mount of instance a, topic b; Unmount must give b back
		m := Mount(MountOf(a), b)
		if back, ok := Unmount(MountOf(a), m); !ok || back != b {
			return fmt.Sprintf("%s (unmounts to %q, %v)", m, back, ok)
		}
		return m
	case "Unmount": // mount of instance a, mounted b
		u, ok := Unmount(MountOf(a), b)
		return fmt.Sprintf("%s|%v", u, ok)
	}
	t.Fatalf("unknown op %q", op)
	return ""
}

func errName(err error) string {
	for _, e := range []struct {
		err  error
		name string
	}{{nil, "ok"}, {ErrEmpty, "empty"}, {ErrTooLong, "toolong"}, {ErrNotUTF8, "utf8"}, {ErrNUL, "nul"},
		{ErrWildcard, "wildcard"}, {ErrHash, "hash"}, {ErrPlus, "plus"}} {
		if err == e.err {
			return e.name
		}
	}
	return "unexpected " + err.Error()
}

// TestTopicRules is the table of every rule of the package. Match rows
// also feed the Index check below.
func TestTopicRules(t *testing.T) {
	long := strings.Repeat("x", MaxLevelBytes+1)
	edge := strings.Repeat("x", MaxLevelBytes)
	huge := strings.Repeat("a/", MaxLen/2) + "ab"
	rows := []struct {
		op, a, b string
		n        int
		want     string
	}{
		// Topic names.
		{"CheckTopic", "a/b/c", "", 0, "ok"},
		{"CheckTopic", "/leading", "", 0, "ok"}, // an empty first level
		{"CheckTopic", "a//b/", "", 0, "ok"},    // empty levels are levels
		{"CheckTopic", "$SYS/x", "", 0, "ok"},   // a name; ValidTopic refuses it
		{"CheckTopic", "ü/日本/🚀", "", 0, "ok"},
		{"CheckTopic", "", "", 0, "empty"},
		{"CheckTopic", huge, "", 0, "toolong"},
		{"CheckTopic", "a/\xff", "", 0, "utf8"},
		{"CheckTopic", "a/\x00/b", "", 0, "nul"},
		{"CheckTopic", "a/+/b", "", 0, "wildcard"},
		{"CheckTopic", "a/#", "", 0, "wildcard"},
		{"CheckTopic", "a#b", "", 0, "wildcard"},
		// Filters.
		{"CheckFilter", "a/+/c", "", 0, "ok"},
		{"CheckFilter", "#", "", 0, "ok"},
		{"CheckFilter", "+", "", 0, "ok"},
		{"CheckFilter", "+/+/#", "", 0, "ok"},
		{"CheckFilter", "a//+/", "", 0, "ok"},
		{"CheckFilter", "$share/g/a/#", "", 0, "ok"}, // syntax only
		{"CheckFilter", "日本/+", "", 0, "ok"},
		{"CheckFilter", "", "", 0, "empty"},
		{"CheckFilter", huge, "", 0, "toolong"},
		{"CheckFilter", "\xc3/#", "", 0, "utf8"},
		{"CheckFilter", "a\x00b", "", 0, "nul"},
		{"CheckFilter", "a/#/b", "", 0, "hash"}, // # not last
		{"CheckFilter", "#/", "", 0, "hash"},
		{"CheckFilter", "a/b#", "", 0, "hash"},
		{"CheckFilter", "a+/b", "", 0, "plus"}, // + mixed in a level
		{"CheckFilter", "a/+b", "", 0, "plus"},
		{"CheckFilter", "++", "", 0, "plus"},
		// Reserved "$" levels, any case; other "$" levels are the instance's.
		{"Reserved", "$SYS/broker", "", 0, "true"},
		{"Reserved", "$SYS", "", 0, "true"},
		{"Reserved", "$sys/x", "", 0, "true"},
		{"Reserved", "$share/g/a", "", 0, "true"},
		{"Reserved", "$SHARE", "", 0, "true"},
		{"Reserved", "$SYSx/a", "", 0, "false"},
		{"Reserved", "$app/status", "", 0, "false"},
		{"Reserved", "a/$SYS", "", 0, "false"},
		{"HasWildcard", "a/+", "", 0, "true"},
		{"HasWildcard", "#", "", 0, "true"},
		{"HasWildcard", "a/b", "", 0, "false"},
		// Level bounds.
		{"LevelsOK", "a/" + edge, "", 0, "true"},
		{"LevelsOK", "a/" + long, "", 0, "false"},
		{"LevelsOK", "a/b/c", "", 3, "true"},
		{"LevelsOK", "a/b/c/d", "", 3, "false"},
		{"LevelsOK", "a/b/", "", 2, "false"}, // a trailing empty level counts
		// What a device may publish and subscribe to.
		{"ValidTopic", "a/b/c", "", 0, "true"},
		{"ValidTopic", "$app/status", "", 0, "true"}, // the instance's own "$" topics
		{"ValidTopic", "/leading", "", 0, "true"},
		{"ValidTopic", "a/../b", "", 0, "true"}, // ".." is an ordinary level
		{"ValidTopic", "ü/🚀", "", 0, "true"},
		{"ValidTopic", "$SYS/broker", "", 0, "false"},
		{"ValidTopic", "$sys/x", "", 0, "false"},
		{"ValidTopic", "$share/g/a", "", 0, "false"},
		{"ValidTopic", "a/+/c", "", 0, "false"},
		{"ValidTopic", "a/\x00/b", "", 0, "false"},
		{"ValidTopic", "", "", 0, "false"},
		{"ValidTopic", "a/" + long, "", 0, "false"},
		{"ValidTopic", "a/b/c", "", 3, "true"},
		{"ValidTopic", "a/b/c/d", "", 3, "false"},
		{"ValidFilter", "a/+/c", "", 0, "true"},
		{"ValidFilter", "+/#", "", 0, "true"},
		{"ValidFilter", "$app/#", "", 0, "true"},
		{"ValidFilter", "$SYS/#", "", 0, "false"},
		{"ValidFilter", "$share/g/a", "", 0, "false"}, // taken apart by SplitShared first
		{"ValidFilter", "a/#/b", "", 0, "false"},
		{"ValidFilter", "a+/b", "", 0, "false"},
		{"ValidFilter", "a/" + long, "", 0, "false"},
		{"ValidFilter", "+/+/+/+", "", 3, "false"},
		// Match (filter, topic), with the "$" rule.
		{"Match", "a/b/c", "a/b/c", 0, "true"},
		{"Match", "a/b/c", "a/b/d", 0, "false"},
		{"Match", "a/+/c", "a/b/c", 0, "true"},
		{"Match", "a/+/c", "a//c", 0, "true"}, // + matches an empty level
		{"Match", "a/+", "a/b/c", 0, "false"},
		{"Match", "a/+", "a", 0, "false"},
		{"Match", "a/#", "a", 0, "true"}, // the parent level
		{"Match", "a/#", "a/b/c", 0, "true"},
		{"Match", "a/#", "b/c", 0, "false"},
		{"Match", "#", "a/b", 0, "true"},
		{"Match", "#", "/a", 0, "true"},
		{"Match", "+/+", "a/b", 0, "true"},
		{"Match", "+/+", "/b", 0, "true"},
		{"Match", "+", "a/b", 0, "false"},
		{"Match", "#", "$SYS/x", 0, "false"}, // [MQTT-4.7.2-1]
		{"Match", "+/x", "$SYS/x", 0, "false"},
		{"Match", "+/#", "$app/x", 0, "false"},
		{"Match", "$SYS/#", "$SYS/x", 0, "true"},
		{"Match", "$app/+", "$app/x", 0, "true"},
		{"Match", "i-1/#", "$i-1/$app/x", 0, "false"}, // mounted "$" topics stay apart
		{"Match", "$i-1/$app/#", "$i-1/$app/x", 0, "true"},
		{"Match", "日本/+", "日本/東京", 0, "true"},
		{"Match", "fleet/+/telemetry", "fleet/truck1/telemetry", 0, "true"},
		{"Match", "fleet/+/telemetry", "fleet/truck1/status", 0, "false"},
		// MatchLevels: the same without the "$" rule.
		{"MatchLevels", "#", "$SYS/x", 0, "true"},
		{"MatchLevels", "+/x", "$app/x", 0, "true"},
		{"MatchLevels", "a/#", "a", 0, "true"},
		{"MatchLevels", "a/+", "a/b/c", 0, "false"},
		{"MatchLevels", "a/b", "a/c", 0, "false"},
		// Covers (rule, sub): every topic of sub matches rule.
		{"Covers", "a/b", "a/b", 0, "true"},
		{"Covers", "a/+", "a/b", 0, "true"},
		{"Covers", "a/#", "a/b/c", 0, "true"},
		{"Covers", "a/#", "a", 0, "true"},
		{"Covers", "#", "x/y", 0, "true"},
		{"Covers", "#", "$app/x", 0, "true"}, // levels only
		{"Covers", "secret/#", "secret/a/+", 0, "true"},
		{"Covers", "+/+", "test/+", 0, "true"},
		{"Covers", "a/#", "a/#", 0, "true"},
		{"Covers", "a/+", "a/b/c", 0, "false"},
		{"Covers", "a/+", "a/#", 0, "false"},
		{"Covers", "a/+/c", "a/b/+", 0, "false"},
		{"Covers", "secret/#", "#", 0, "false"},
		{"Covers", "a/b", "+/b", 0, "false"},
		{"Covers", "test/nosubscribe", "test/+", 0, "false"},
		{"Covers", "a/b/#", "a/+", 0, "false"},
		// Intersects: some topic matches both.
		{"Intersects", "a/+", "+/b", 0, "true"}, // a/b
		{"Intersects", "a/#", "a", 0, "true"},
		{"Intersects", "#", "$app/x", 0, "true"},
		{"Intersects", "a/+/c", "a/b/#", 0, "true"},
		{"Intersects", "+/+", "a/b", 0, "true"},
		{"Intersects", "a//c", "a/+/c", 0, "true"},
		{"Intersects", "a/+", "b/+", 0, "false"},
		{"Intersects", "+", "a/b", 0, "false"},
		{"Intersects", "a/b/c", "a/b", 0, "false"},
		{"Intersects", "+/x", "+/y/#", 0, "false"},
		// Shared subscriptions.
		{"SplitShared", "$share/g/a/b", "", 0, "g|a/b|true"},
		{"SplitShared", "$share/g/#", "", 0, "g|#|true"},
		{"SplitShared", "$share/g/", "", 0, "||true"},
		{"SplitShared", "$share//a", "", 0, "||true"},
		{"SplitShared", "$share/g", "", 0, "||true"},
		{"SplitShared", "$SHARE/g/a", "", 0, "|$SHARE/g/a|false"}, // the prefix is exact
		{"SplitShared", "a/b", "", 0, "|a/b|false"},
		// The instance mount.
		{"Mount", "i-1", "a/b", 0, "i-1/a/b"},
		{"Mount", "i-1", "/a", 0, "i-1//a"},
		{"Mount", "i-1", "#", 0, "i-1/#"},
		{"Mount", "i-1", "$app/x", 0, "$i-1/$app/x"},
		{"Mount", "i-1", "$app/#", 0, "$i-1/$app/#"},
		{"Unmount", "i-1", "i-1/a", 0, "a|true"},
		{"Unmount", "i-1", "i-2/a", 0, "i-2/a|false"},
		{"Unmount", "i-1", "$i-2/$a", 0, "$i-2/$a|false"},
		{"Unmount", "i-1", "$i-1/a", 0, "$i-1/a|false"}, // a "$" mount holds only "$" topics
		{"Unmount", "i-1", "i-10/a", 0, "i-10/a|false"},
		{"Unmount", "i-1", "a", 0, "a|false"},
	}
	for _, r := range rows {
		if got := eval(t, r.op, r.a, r.b, r.n); got != r.want {
			t.Errorf("%s(%.40q, %.40q, %d) = %.80q, want %q", r.op, r.a, r.b, r.n, got, r.want)
		}
	}

	// Index: every filter of the Match rows at once; each topic must get
	// exactly the filters Match accepts, before and after removals.
	var filters, topics []string
	for _, r := range rows {
		if r.op == "Match" || r.op == "MatchLevels" {
			if !slices.Contains(filters, r.a) {
				filters = append(filters, r.a)
			}
			if !slices.Contains(topics, r.b) {
				topics = append(topics, r.b)
			}
		}
	}
	ix := NewIndex()
	for _, f := range filters {
		ix.Add(f)
	}
	check := func(live []string) {
		t.Helper()
		for _, tp := range topics {
			got := map[string]int{}
			for _, f := range ix.Match(nil, tp) {
				got[f]++
			}
			for _, f := range live {
				want := 0
				if Match(f, tp) {
					want = 1
				}
				if got[f] != want {
					t.Errorf("Index.Match %q on %q: %d times, want %d", f, tp, got[f], want)
				}
				delete(got, f)
			}
			if len(got) != 0 {
				t.Errorf("Index matched removed filters %v on %q", got, tp)
			}
		}
	}
	check(filters)
	for i, f := range filters {
		if empty := ix.Remove(f); empty != (i == len(filters)-1) {
			t.Fatalf("Remove(%q) empty = %v", f, empty)
		}
		check(filters[i+1:])
	}
}
