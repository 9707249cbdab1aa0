package store

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestLqKeyEncoding(t *testing.T) {
	cases := []struct {
		inst, queue string
		off         uint64
	}{
		{"i1", "a/b", 1},
		{"i1", "a/+/c", 1 << 40},
		{"inst-long-id", "#", 0xffffffffffffffff},
		{"x", "a/b/c/d/e", 0},
	}
	for _, c := range cases {
		k := lqKey(c.inst, c.queue, c.off)
		inst, q, off, ok := parseLqKey(k)
		if !ok || string(inst) != c.inst || string(q) != c.queue || off != c.off {
			t.Errorf("parseLqKey(lqKey(%q,%q,%d)) = %q,%q,%d,%v", c.inst, c.queue, c.off, inst, q, off, ok)
		}
		if !bytes.HasPrefix(k, lqPrefix(c.inst, c.queue)) || bytes.Compare(k, prefixEnd(lqPrefix(c.inst, c.queue))) >= 0 {
			t.Errorf("key of %q/%q outside its prefix range", c.inst, c.queue)
		}
	}
	// Unambiguous: queue "a" of instance "i" never shares a prefix range
	// with queue "a/b" or instance "i1".
	if bytes.HasPrefix(lqKey("i", "a/b", 1), lqPrefix("i", "a")) || bytes.HasPrefix(lqKey("i1", "a", 1), lqPrefix("i", "a")) {
		t.Error("prefixes overlap")
	}
	if _, _, _, ok := parseLqKey(ckptKey); ok {
		t.Error("checkpoint key parsed as an index entry")
	}
	// Order within a queue follows the offset.
	if bytes.Compare(lqKey("i", "q", 255), lqKey("i", "q", 256)) >= 0 {
		t.Error("offset order not preserved")
	}
}

func TestCheckName(t *testing.T) {
	for _, n := range []string{"", "a\x00b"} {
		if err := checkName("instance", n); !errors.Is(err, ErrInvalidName) {
			t.Errorf("checkName(%q) = %v, want ErrInvalidName", n, err)
		}
	}
	if err := checkName("instance", "i-1"); err != nil {
		t.Errorf("checkName(i-1) = %v", err)
	}
}

func TestMessageEncoding(t *testing.T) {
	full := Message{Instance: "inst", Topic: "a/b", QoS: 2, Retain: true, Payload: []byte("hello"),
		Properties: Properties{MessageExpiry: 60, ContentType: "text/plain", ResponseTopic: "r/t",
			CorrelationData: []byte{1, 2, 3}, User: []UserProperty{{"k", "v"}, {"k", "w"}}},
		Time: time.UnixMilli(1700000000123)}
	full.Properties.SetPayloadFormat(1)
	cases := []struct {
		name string
		m    Message
	}{
		{"minimal", Message{Instance: "i", Topic: "t", QoS: 1, Time: time.UnixMilli(5)}},
		{"empty payload", Message{Instance: "i", Topic: "t", Time: time.UnixMilli(5)}},
		{"all properties", full},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := encodeMessage(nil, &c.m)
			got, err := decodeMessage(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got.Instance != c.m.Instance || got.Topic != c.m.Topic || got.QoS != c.m.QoS || got.Retain != c.m.Retain ||
				!bytes.Equal(got.Payload, c.m.Payload) || !got.Time.Equal(c.m.Time) {
				t.Fatalf("roundtrip = %+v, want %+v", got, c.m)
			}
			gp, wp := got.Properties, c.m.Properties
			if gp.HasPayloadFormat() != wp.HasPayloadFormat() || gp.PayloadFormat != wp.PayloadFormat || gp.MessageExpiry != wp.MessageExpiry ||
				gp.ContentType != wp.ContentType || gp.ResponseTopic != wp.ResponseTopic || !bytes.Equal(gp.CorrelationData, wp.CorrelationData) ||
				len(gp.User) != len(wp.User) {
				t.Fatalf("properties = %+v, want %+v", gp, wp)
			}
			for i := range gp.User {
				if gp.User[i] != wp.User[i] {
					t.Fatalf("user property %d = %v", i, gp.User[i])
				}
			}
			inst, ms, ok := recordHeader(b)
			if !ok || string(inst) != c.m.Instance || ms != uint64(c.m.Time.UnixMilli()) {
				t.Fatalf("recordHeader = %q %d %v", inst, ms, ok)
			}
			if _, err := decodeMessage(b[:3]); err == nil {
				t.Fatal("truncated record decoded")
			}
		})
	}
}

func TestParseSyncPolicy(t *testing.T) {
	cases := []struct {
		in   string
		want SyncPolicy
		ok   bool
	}{{"", SyncBatch, true}, {"batch", SyncBatch, true}, {"always", SyncAlways, true}, {"none", SyncNone, true}, {"sometimes", 0, false}}
	for _, c := range cases {
		got, err := ParseSyncPolicy(c.in)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("ParseSyncPolicy(%q) = %v, %v", c.in, got, err)
		}
		if c.ok && got.String() != c.want.String() {
			t.Errorf("String() = %q", got.String())
		}
	}
}
