package gateway

import (
	"strings"
	"testing"
)

func TestValidTopicAndFilter(t *testing.T) {
	long := strings.Repeat("x", maxLevelLen+1)
	cases := []struct {
		s             string
		topic, filter bool
	}{
		{"a/b/c", true, true},
		{"a/+/c", false, true},
		{"a/#", false, true},
		{"#", false, true},
		{"+/#", false, true},
		{"$SYS/broker", false, false},
		{"$share/g/a", false, false}, // handled before validFilter
		{"$sys/x", false, false},
		{"$app/status", true, true}, // the instance's own "$" topics (issue 21)
		{"$app/#", false, true},
		{"/leading", true, true}, // an empty first level: legal MQTT, still under the mount
		{"a/\x00/b", false, false},
		{"a/#/b", false, false},
		{"a/b#", false, false},
		{"a+/b", false, false},
		{"", false, false},
		{"a/" + long, false, false},
		{"a/../b", true, true}, // ".." is an ordinary level in MQTT; the mount still applies
	}
	for _, c := range cases {
		if got := validTopic(c.s, 0); got != c.topic {
			t.Errorf("validTopic(%q) = %v, want %v", c.s, got, c.topic)
		}
		if got := validFilter(c.s, 0); got != c.filter {
			t.Errorf("validFilter(%q) = %v, want %v", c.s, got, c.filter)
		}
	}
	if validTopic("a/b/c/d", 3) || !validTopic("a/b/c", 3) {
		t.Error("max levels not applied")
	}
}

func TestTopicMatchCovers(t *testing.T) {
	cases := []struct {
		a, b          string
		match, covers bool // match: topic b matches filter a
	}{
		{"a/b", "a/b", true, true},
		{"a/+", "a/b", true, true},
		{"a/#", "a/b/c", true, true},
		{"a/#", "a", true, true},
		{"#", "x/y", true, true},
		{"a/+", "a/b/c", false, false},
		{"a/b", "a/c", false, false},
		{"a/+", "a/#", false, false},
		{"a/+/c", "a/b/+", false, false},
		{"secret/#", "#", false, false},
		{"a/b", "+/b", false, false},
		{"test/nosubscribe", "test/+", false, false},
		{"secret/#", "secret/a/+", false, true},
		{"+/+", "test/+", false, true},
	}
	for _, c := range cases {
		if !strings.ContainsAny(c.b, "+#") {
			if got := topicMatch(c.a, c.b); got != c.match {
				t.Errorf("topicMatch(%q, %q) = %v, want %v", c.a, c.b, got, c.match)
			}
		}
		if got := covers(c.a, c.b); got != c.covers {
			t.Errorf("covers(%q, %q) = %v, want %v", c.a, c.b, got, c.covers)
		}
	}
}

func TestSplitShared(t *testing.T) {
	cases := []struct {
		in, group, filter string
		shared            bool
	}{
		{"$share/g/a/b", "g", "a/b", true},
		{"$share/g/", "", "", true},
		{"$share//a", "", "", true},
		{"a/b", "", "a/b", false},
	}
	for _, c := range cases {
		g, f, ok := splitShared(c.in)
		if g != c.group || f != c.filter || ok != c.shared {
			t.Errorf("splitShared(%q) = %q %q %v", c.in, g, f, ok)
		}
	}
}

// "$" topics get their own mount so that the instance's leading-wildcard
// filters ("<instance>/#") never match them [MQTT-4.7.2-1].
func TestMountTopic(t *testing.T) {
	for _, c := range []struct{ in, mounted string }{
		{"a/b", "i-1/a/b"},
		{"$app/x", "$i-1/$app/x"},
		{"#", "i-1/#"},
		{"$app/#", "$i-1/$app/#"},
	} {
		got := mountTopic("i-1/", c.in)
		if got != c.mounted {
			t.Errorf("mountTopic(%q) = %q, want %q", c.in, got, c.mounted)
		}
		if back, ok := unmountTopic("i-1/", got); !ok || back != c.in {
			t.Errorf("unmountTopic(%q) = %q, %v", got, back, ok)
		}
		if topicMatch("i-1/#", got) && strings.HasPrefix(c.in, "$") {
			t.Errorf("%q matched by the instance's #", got)
		}
	}
	for _, outside := range []string{"i-2/a", "$i-2/$a", "$i-1/a", "a"} {
		if _, ok := unmountTopic("i-1/", outside); ok {
			t.Errorf("%q taken as inside i-1", outside)
		}
	}
}
