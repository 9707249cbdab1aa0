package api

import (
	"net/http"
	"testing"
	"time"
)

func TestPreferWait(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want time.Duration
	}{
		{nil, 0},
		{[]string{"wait=5"}, 5 * time.Second},
		{[]string{"respond-async, wait=100"}, MaxConfigWait},
		{[]string{"return=minimal", "Wait = 2"}, 2 * time.Second},
		{[]string{`wait="7"`}, 7 * time.Second},
		{[]string{"wait=soon"}, 0},
		{[]string{"wait=-3"}, 0},
		{[]string{"handling=strict"}, 0},
	} {
		h := http.Header{}
		for _, v := range c.in {
			h.Add("Prefer", v)
		}
		if got := preferWait(h); got != c.want {
			t.Errorf("Prefer %q: %s, want %s", c.in, got, c.want)
		}
	}
}
