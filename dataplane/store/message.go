package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Message is one stored MQTT application message. Topic is the topic inside
// the instance (without the gateway's mount prefix).
type Message struct {
	Instance   string
	Topic      string
	QoS        byte
	Retain     bool
	Payload    []byte
	Properties Properties
	// Time is when the store accepted the message; Append sets it.
	Time time.Time
	// Origin is the client ID (as the gateway knows it) of the publisher,
	// "" if unknown: a No Local subscription of that client skips it.
	Origin string
}

// Properties are the MQTT 5 publish properties kept with a message.
type Properties struct {
	PayloadFormat    byte   // 0 unspecified bytes, 1 UTF-8
	MessageExpiry    uint32 // seconds; 0 means no expiry
	ContentType      string
	ResponseTopic    string
	CorrelationData  []byte
	User             []UserProperty
	SubscriptionIDs  []uint32 // not stored; for the gateway's use only
	hasPayloadFormat bool
}

// UserProperty is an MQTT 5 user property.
type UserProperty struct{ Key, Value string }

// SetPayloadFormat sets the payload format indicator and marks it present.
func (p *Properties) SetPayloadFormat(v byte) { p.PayloadFormat, p.hasPayloadFormat = v, true }

// HasPayloadFormat reports whether the payload format indicator was set.
func (p *Properties) HasPayloadFormat() bool { return p.hasPayloadFormat }

// Expired reports whether a message with an expiry interval has expired at now.
func (m *Message) Expired(now time.Time) bool {
	return m.Properties.MessageExpiry > 0 && now.Sub(m.Time) >= time.Duration(m.Properties.MessageExpiry)*time.Second
}

const msgVersion = 1

const (
	propPayloadFormat = 1 << iota
	propExpiry
	propContentType
	propResponseTopic
	propCorrelation
	propUser
	propOrigin
)

var errCorrupt = errors.New("store: corrupt message record")

// encodeMessage appends the log record of m to dst:
// version | uvarint time(ms) | flags(qos|retain<<2|props<<3) | str instance |
// str topic | [propflags | props…] | payload.
func encodeMessage(dst []byte, m *Message) []byte {
	p := &m.Properties
	var pf byte
	if p.hasPayloadFormat {
		pf |= propPayloadFormat
	}
	if p.MessageExpiry > 0 {
		pf |= propExpiry
	}
	if p.ContentType != "" {
		pf |= propContentType
	}
	if p.ResponseTopic != "" {
		pf |= propResponseTopic
	}
	if len(p.CorrelationData) > 0 {
		pf |= propCorrelation
	}
	if len(p.User) > 0 {
		pf |= propUser
	}
	if m.Origin != "" {
		pf |= propOrigin
	}
	flags := m.QoS & 3
	if m.Retain {
		flags |= 4
	}
	if pf != 0 {
		flags |= 8
	}
	dst = append(dst, msgVersion)
	dst = binary.AppendUvarint(dst, uint64(m.Time.UnixMilli()))
	dst = append(dst, flags)
	dst = appendStr(dst, m.Instance)
	dst = appendStr(dst, m.Topic)
	if pf != 0 {
		dst = append(dst, pf)
		if pf&propPayloadFormat != 0 {
			dst = append(dst, p.PayloadFormat)
		}
		if pf&propExpiry != 0 {
			dst = binary.AppendUvarint(dst, uint64(p.MessageExpiry))
		}
		if pf&propContentType != 0 {
			dst = appendStr(dst, p.ContentType)
		}
		if pf&propResponseTopic != 0 {
			dst = appendStr(dst, p.ResponseTopic)
		}
		if pf&propCorrelation != 0 {
			dst = appendStr(dst, string(p.CorrelationData))
		}
		if pf&propUser != 0 {
			dst = binary.AppendUvarint(dst, uint64(len(p.User)))
			for _, u := range p.User {
				dst = appendStr(dst, u.Key)
				dst = appendStr(dst, u.Value)
			}
		}
		if pf&propOrigin != 0 {
			dst = appendStr(dst, m.Origin)
		}
	}
	return append(dst, m.Payload...)
}

func appendStr(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.err = errCorrupt
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil || uint64(len(r.b)) < n {
		r.err = errCorrupt
		return nil
	}
	s := r.b[:n:n]
	r.b = r.b[n:]
	return s
}

// decodeMessage decodes a log record. The result does not alias b.
func decodeMessage(b []byte) (*Message, error) {
	b = append([]byte(nil), b...)
	r := reader{b: b}
	if r.byte() != msgVersion {
		return nil, fmt.Errorf("%w: version", errCorrupt)
	}
	m := &Message{}
	m.Time = time.UnixMilli(int64(r.uvarint()))
	flags := r.byte()
	m.QoS, m.Retain = flags&3, flags&4 != 0
	m.Instance = string(r.bytes())
	m.Topic = string(r.bytes())
	if flags&8 != 0 {
		pf := r.byte()
		p := &m.Properties
		if pf&propPayloadFormat != 0 {
			p.SetPayloadFormat(r.byte())
		}
		if pf&propExpiry != 0 {
			p.MessageExpiry = uint32(r.uvarint())
		}
		if pf&propContentType != 0 {
			p.ContentType = string(r.bytes())
		}
		if pf&propResponseTopic != 0 {
			p.ResponseTopic = string(r.bytes())
		}
		if pf&propCorrelation != 0 {
			p.CorrelationData = r.bytes()
		}
		if pf&propUser != 0 {
			n := r.uvarint()
			if n > uint64(len(r.b)) {
				r.err = errCorrupt
			}
			for i := uint64(0); i < n && r.err == nil; i++ {
				p.User = append(p.User, UserProperty{Key: string(r.bytes()), Value: string(r.bytes())})
			}
		}
		if pf&propOrigin != 0 {
			m.Origin = string(r.bytes())
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	m.Payload = r.b
	return m, nil
}

// recordHeader returns the instance and time of a log record without
// decoding the rest (used by the compaction filter and retention scans).
func recordHeader(b []byte) (instance []byte, ms uint64, ok bool) {
	r := reader{b: b}
	if r.byte() != msgVersion {
		return nil, 0, false
	}
	ms = r.uvarint()
	r.byte()
	instance = r.bytes()
	return instance, ms, r.err == nil
}
