package jsstore

import (
	"strings"
	"testing"
)

func TestEscapeToken(t *testing.T) {
	cases := []struct{ level, token string }{
		{"plain", "plain"},
		{"", "~~"},
		{"a.b", "a~2Eb"},
		{"*", "~2A"},
		{">", "~3E"},
		{"~", "~7E"},
		{"~~", "~7E~7E"},
		{"a b", "a~20b"},
		{"tab\there", "tab~09here"},
		{"nl\r\n", "nl~0D~0A"},
		{"del\x7f", "del~7F"},
		{"$SYS", "$SYS"},
		{"ünï", "ünï"},
		{"a-b_c=d", "a-b_c=d"},
	}
	for _, c := range cases {
		if got := EscapeToken(c.level); got != c.token {
			t.Errorf("EscapeToken(%q) = %q, want %q", c.level, got, c.token)
		}
		back, err := UnescapeToken(c.token)
		if err != nil || back != c.level {
			t.Errorf("UnescapeToken(%q) = %q, %v; want %q", c.token, back, err, c.level)
		}
		if strings.ContainsAny(c.token, ".*> \t\r\n") {
			t.Errorf("token %q holds a byte NATS reserves", c.token)
		}
	}
	for _, bad := range []string{"", "~", "~2", "~zz", "a~4"} {
		if _, err := UnescapeToken(bad); err == nil {
			t.Errorf("UnescapeToken(%q): no error", bad)
		}
	}
}

func TestTopicSubject(t *testing.T) {
	cases := []struct{ topic, subject string }{
		{"a", "p.m.i.t.a.~"},
		{"a/b", "p.m.i.t.a.b.~"},
		{"a//b", "p.m.i.t.a.~~.b.~"},
		{"/", "p.m.i.t.~~.~~.~"},
		{"a.b/*/>", "p.m.i.t.a~2Eb.~2A.~3E.~"},
		{"$SYS/x", "p.m.i.s.$SYS.x.~"},
		{"x/$y", "p.m.i.t.x.$y.~"},
	}
	for _, c := range cases {
		if got := TopicSubject("p", "m", "i", c.topic); got != c.subject {
			t.Errorf("TopicSubject(%q) = %q, want %q", c.topic, got, c.subject)
		}
		inst, topic, err := SubjectTopic("p", "m", c.subject)
		if err != nil || inst != "i" || topic != c.topic {
			t.Errorf("SubjectTopic(%q) = %q, %q, %v", c.subject, inst, topic, err)
		}
	}
	if got := TopicSubject("p", "r", "in.st", "a"); got != "p.r.in~2Est.t.a.~" {
		t.Errorf("instance escaping: %q", got)
	}
	for _, bad := range []string{"p.m.i.t.~", "p.m.i.t.a", "q.m.i.t.a.~", "p.m.i.s.a.~", "p.m.i.t.$a.~"} {
		if _, _, err := SubjectTopic("p", "m", bad); err == nil {
			t.Errorf("SubjectTopic(%q): no error", bad)
		}
	}
}

func TestFilterSubject(t *testing.T) {
	cases := []struct{ filter, subject string }{
		{"a/b", "p.m.i.t.a.b.~"},
		{"a/+", "p.m.i.t.a.*.~"},
		{"a/#", "p.m.i.t.a.>"},
		{"#", "p.m.i.t.>"},
		{"+", "p.m.i.t.*.~"},
		{"+/b/#", "p.m.i.t.*.b.>"},
		{"$SYS/#", "p.m.i.s.$SYS.>"},
		{"a//+", "p.m.i.t.a.~~.*.~"},
		{"a.b/+", "p.m.i.t.a~2Eb.*.~"},
	}
	for _, c := range cases {
		if got := FilterSubject("p", "m", "i", c.filter); got != c.subject {
			t.Errorf("FilterSubject(%q) = %q, want %q", c.filter, got, c.subject)
		}
	}
}
