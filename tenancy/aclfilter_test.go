package tenancy

import "testing"

func TestValidACLFilter(t *testing.T) {
	for _, tc := range []struct {
		filter string
		ok     bool
	}{
		{"a/b", true},
		{"#", true},
		{"+/x/#", true},
		{"${username}/#", true},           // a placeholder may come first
		{"devices/${clientid}/cmd", true}, // or anywhere in a level
		{"$app/#", true},                  // the instance's own $-topics
		{"$SYS/#", false},                 // the broker's reserved topics
		{"$SYS", false},
		{"$share/g/a", false},
		{"${other}/#", false}, // unknown placeholder
		{"a/#/b", false},
		{"a+/b", false},
		{"", false},
		{"a\x00b", false},
		{string(make([]byte, 513)), false},
	} {
		if got := ValidACLFilter(tc.filter); got != tc.ok {
			t.Errorf("ValidACLFilter(%q) = %v, want %v", tc.filter, got, tc.ok)
		}
	}
}
