package conformance

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// Packet types.
const (
	tConnect     = 1
	tConnack     = 2
	tPublish     = 3
	tPuback      = 4
	tPubrec      = 5
	tPubrel      = 6
	tPubcomp     = 7
	tSubscribe   = 8
	tSuback      = 9
	tUnsubscribe = 10
	tUnsuback    = 11
	tPingreq     = 12
	tPingresp    = 13
	tDisconnect  = 14
)

// Property identifiers (MQTT 5).
const (
	pPayloadFormat    = 0x01
	pMessageExpiry    = 0x02
	pContentType      = 0x03
	pResponseTopic    = 0x08
	pCorrelation      = 0x09
	pSubID            = 0x0B
	pSessionExpiry    = 0x11
	pAssignedClientID = 0x12
	pServerKeepAlive  = 0x13
	pReasonString     = 0x1F
	pReceiveMaximum   = 0x21
	pTopicAliasMax    = 0x22
	pTopicAlias       = 0x23
	pMaximumQoS       = 0x24
	pRetainAvailable  = 0x25
	pUser             = 0x26
	pMaxPacketSize    = 0x27
	pWildcardAvail    = 0x28
	pSubIDAvail       = 0x29
	pSharedAvail      = 0x2A
	pWillDelay        = 0x18
)

// enc builds packet bodies.
type enc []byte

func (e enc) u8(b byte) enc    { return append(e, b) }
func (e enc) u16(v uint16) enc { return binary.BigEndian.AppendUint16(e, v) }
func (e enc) u32(v uint32) enc { return binary.BigEndian.AppendUint32(e, v) }
func (e enc) str(s string) enc { return append(e.u16(uint16(len(s))), s...) }
func (e enc) raw(b []byte) enc { return append(e, b...) }
func (e enc) vbi(v int) enc {
	for {
		b := byte(v % 128)
		v /= 128
		if v > 0 {
			b |= 0x80
		}
		e = append(e, b)
		if v == 0 {
			return e
		}
	}
}

// prop is one MQTT 5 property to encode.
type prop struct {
	id  byte
	val any // byte, uint16, uint32, int (variable byte integer), string, []byte, [2]string (user)
}

func props(ps ...prop) []byte {
	var b enc
	for _, p := range ps {
		b = b.u8(p.id)
		switch v := p.val.(type) {
		case byte:
			b = b.u8(v)
		case uint16:
			b = b.u16(v)
		case uint32:
			b = b.u32(v)
		case int:
			b = b.vbi(v)
		case string:
			b = b.str(v)
		case []byte:
			b = b.u16(uint16(len(v))).raw(v)
		case [2]string:
			b = b.str(v[0]).str(v[1])
		default:
			panic(fmt.Sprintf("property %#x: %T", p.id, p.val))
		}
	}
	return enc(nil).vbi(len(b)).raw(b)
}

// frame wraps a body in a fixed header.
func frame(typ, flags byte, body []byte) []byte {
	return enc(nil).u8(typ<<4 | flags).vbi(len(body)).raw(body)
}

// will is a CONNECT's will.
type will struct {
	topic   string
	payload string
	qos     byte
	retain  bool
	props   []prop
}

// connOpts describe a CONNECT.
type connOpts struct {
	id        string
	clean     bool
	keepalive uint16
	will      *will
	user      *string
	pass      *string
	props     []prop
	flags     *byte  // raw connect flags override
	proto     string // protocol name override
	level     byte   // protocol level override
}

func connectPacket(v byte, o connOpts) []byte {
	name := "MQTT"
	if o.proto != "" {
		name = o.proto
	}
	level := v
	if o.level != 0 {
		level = o.level
	}
	var fl byte
	if o.clean {
		fl |= 2
	}
	if o.will != nil {
		fl |= 4 | o.will.qos<<3
		if o.will.retain {
			fl |= 0x20
		}
	}
	if o.pass != nil {
		fl |= 0x40
	}
	if o.user != nil {
		fl |= 0x80
	}
	if o.flags != nil {
		fl = *o.flags
	}
	b := enc(nil).str(name).u8(level).u8(fl).u16(o.keepalive)
	if v == 5 {
		b = b.raw(props(o.props...))
	}
	b = b.str(o.id)
	if o.will != nil {
		if v == 5 {
			b = b.raw(props(o.will.props...))
		}
		b = b.str(o.will.topic).str(o.will.payload)
	}
	if o.user != nil {
		b = b.str(*o.user)
	}
	if o.pass != nil {
		b = b.str(*o.pass)
	}
	return frame(tConnect, 0, b)
}

// pub describes a PUBLISH.
type pub struct {
	topic   string
	payload string
	qos     byte
	retain  bool
	dup     bool
	id      uint16
	props   []prop
}

func publishPacket(v byte, p pub) []byte {
	fl := p.qos << 1
	if p.retain {
		fl |= 1
	}
	if p.dup {
		fl |= 8
	}
	b := enc(nil).str(p.topic)
	if p.qos > 0 {
		b = b.u16(p.id)
	}
	if v == 5 {
		b = b.raw(props(p.props...))
	}
	return frame(tPublish, fl, b.raw([]byte(p.payload)))
}

// sub is one SUBSCRIBE entry: options byte = qos | nl<<2 | rap<<3 | rh<<4.
type sub struct {
	filter string
	opts   byte
}

func subscribePacket(v byte, id uint16, ps []prop, subs ...sub) []byte {
	b := enc(nil).u16(id)
	if v == 5 {
		b = b.raw(props(ps...))
	}
	for _, s := range subs {
		b = b.str(s.filter).u8(s.opts)
	}
	return frame(tSubscribe, 2, b)
}

func unsubscribePacket(v byte, id uint16, filters ...string) []byte {
	b := enc(nil).u16(id)
	if v == 5 {
		b = b.raw(props())
	}
	for _, f := range filters {
		b = b.str(f)
	}
	return frame(tUnsubscribe, 2, b)
}

// ackPacket builds PUBACK/PUBREC/PUBREL/PUBCOMP.
func ackPacket(typ byte, id uint16) []byte {
	fl := byte(0)
	if typ == tPubrel {
		fl = 2
	}
	return frame(typ, fl, enc(nil).u16(id))
}

func disconnectPacket(v byte, rc byte, ps ...prop) []byte {
	if v < 5 || rc == 0 && len(ps) == 0 {
		return frame(tDisconnect, 0, nil)
	}
	return frame(tDisconnect, 0, enc(nil).u8(rc).raw(props(ps...)))
}

// packet is a received control packet, decoded.
type packet struct {
	typ, flags byte
	body       []byte

	sessionPresent bool
	rc             byte   // CONNACK/acks/DISCONNECT reason code
	codes          []byte // SUBACK/UNSUBACK
	id             uint16
	topic          string
	payload        []byte
	qos            byte
	retain, dup    bool
	props          []prop
}

func (p *packet) String() string {
	return fmt.Sprintf("type %d flags %#x rc %#x id %d topic %q codes %x", p.typ, p.flags, p.rc, p.id, p.topic, p.codes)
}

// prop returns the first property id (nil if absent).
func (p *packet) prop(id byte) any {
	for _, pr := range p.props {
		if pr.id == id {
			return pr.val
		}
	}
	return nil
}

func (p *packet) propsOf(id byte) []any {
	var out []any
	for _, pr := range p.props {
		if pr.id == id {
			out = append(out, pr.val)
		}
	}
	return out
}

// dec reads fields of a body.
type dec struct {
	b   []byte
	err error
}

func (d *dec) need(n int) bool {
	if d.err == nil && len(d.b) < n {
		d.err = errors.New("short packet")
	}
	return d.err == nil
}
func (d *dec) u8() byte {
	if !d.need(1) {
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}
func (d *dec) u16() uint16 {
	if !d.need(2) {
		return 0
	}
	v := binary.BigEndian.Uint16(d.b)
	d.b = d.b[2:]
	return v
}
func (d *dec) u32() uint32 {
	if !d.need(4) {
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}
func (d *dec) bin() []byte {
	n := int(d.u16())
	if !d.need(n) {
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}
func (d *dec) vbi() int {
	v, m := 0, 1
	for i := 0; i < 4; i++ {
		c := d.u8()
		v += int(c&0x7f) * m
		if c&0x80 == 0 {
			return v
		}
		m *= 128
	}
	d.err = errors.New("bad variable byte integer")
	return 0
}

func (d *dec) properties() []prop {
	n := d.vbi()
	if !d.need(n) {
		return nil
	}
	sub := &dec{b: d.b[:n]}
	d.b = d.b[n:]
	var out []prop
	for len(sub.b) > 0 && sub.err == nil {
		id := sub.u8()
		var v any
		switch id {
		case pPayloadFormat, pMaximumQoS, pRetainAvailable, pWildcardAvail, pSubIDAvail, pSharedAvail, 0x17, 0x19:
			v = sub.u8()
		case pServerKeepAlive, pReceiveMaximum, pTopicAliasMax, pTopicAlias:
			v = sub.u16()
		case pMessageExpiry, pSessionExpiry, pMaxPacketSize, pWillDelay:
			v = sub.u32()
		case pSubID:
			v = sub.vbi()
		case pContentType, pResponseTopic, pAssignedClientID, pReasonString, 0x15, 0x1A, 0x1C:
			v = string(sub.bin())
		case pCorrelation, 0x16:
			v = sub.bin()
		case pUser:
			v = [2]string{string(sub.bin()), string(sub.bin())}
		default:
			d.err = fmt.Errorf("unknown property %#x", id)
			return out
		}
		out = append(out, prop{id, v})
	}
	if sub.err != nil {
		d.err = sub.err
	}
	return out
}

// decode parses a packet received by a client of protocol version v.
func decode(v byte, typ, flags byte, body []byte) (*packet, error) {
	p := &packet{typ: typ, flags: flags, body: body}
	d := &dec{b: body}
	switch typ {
	case tConnack:
		p.sessionPresent = d.u8()&1 == 1
		p.rc = d.u8()
		if v == 5 {
			p.props = d.properties()
		}
	case tPublish:
		p.qos, p.retain, p.dup = flags>>1&3, flags&1 == 1, flags&8 == 8
		p.topic = string(d.bin())
		if p.qos > 0 {
			p.id = d.u16()
		}
		if v == 5 {
			p.props = d.properties()
		}
		if d.err == nil {
			p.payload = d.b
			d.b = nil
		}
	case tPuback, tPubrec, tPubrel, tPubcomp:
		p.id = d.u16()
		if v == 5 && len(d.b) > 0 {
			p.rc = d.u8()
			if len(d.b) > 0 {
				p.props = d.properties()
			}
		}
	case tSuback, tUnsuback:
		p.id = d.u16()
		if v == 5 {
			p.props = d.properties()
		}
		p.codes = d.b
		d.b = nil
	case tDisconnect:
		if v == 5 && len(d.b) > 0 {
			p.rc = d.u8()
			if len(d.b) > 0 {
				p.props = d.properties()
			}
		}
	case tPingresp:
	default:
		return p, fmt.Errorf("unexpected packet type %d", typ)
	}
	if d.err != nil {
		return p, fmt.Errorf("packet type %d: %w", typ, d.err)
	}
	if len(d.b) != 0 {
		return p, fmt.Errorf("packet type %d: %d trailing bytes", typ, len(d.b))
	}
	return p, nil
}

// client is a raw MQTT connection.
type client struct {
	pending []*packet // PUBLISHes read while waiting for something else
	t       testing.TB
	v       byte
	conn    net.Conn
	r       *bufio.Reader
}

// errClosed is returned by read once the server closed the connection.
var errClosed = errors.New("connection closed")

func dial(t testing.TB, b *broker, v byte) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", b.addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", b.name, err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, v: v, conn: c, r: bufio.NewReader(c)}
}

func (c *client) send(pkts ...[]byte) {
	c.t.Helper()
	for _, p := range pkts {
		_ = c.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.conn.Write(p); err != nil {
			c.t.Logf("write: %v", err) // the server may have closed; read tells
		}
	}
}

// read returns the next packet within d (nil, os.ErrDeadlineExceeded-ish
// error on timeout; errClosed when the connection ended).
func (c *client) read(d time.Duration) (*packet, error) {
	if len(c.pending) > 0 {
		p := c.pending[0]
		c.pending = c.pending[1:]
		return p, nil
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	h, err := c.r.ReadByte()
	if err != nil {
		return nil, wrapRead(err)
	}
	n, m := 0, 1
	for i := 0; ; i++ {
		b, err := c.r.ReadByte()
		if err != nil {
			return nil, wrapRead(err)
		}
		n += int(b&0x7f) * m
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return nil, errors.New("bad remaining length")
		}
		m *= 128
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return nil, wrapRead(err)
	}
	return decode(c.v, h>>4, h&15, body)
}

func wrapRead(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	return errClosed
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// expect reads the next packet and requires its type.
func (c *client) expect(typ byte) *packet {
	c.t.Helper()
	p, err := c.read(3 * time.Second)
	if err != nil {
		c.t.Fatalf("want packet type %d: %v", typ, err)
	}
	if p.typ != typ {
		c.t.Fatalf("want packet type %d, got %s", typ, p)
	}
	return p
}

// nothing asserts no packet arrives within d.
func (c *client) nothing(d time.Duration) {
	c.t.Helper()
	p, err := c.read(d)
	if err == nil {
		c.t.Fatalf("unexpected packet %s", p)
	}
	if !isTimeout(err) {
		c.t.Fatalf("unexpected end of connection: %v", err)
	}
}

// closedAfter reads until the server closes the connection (within d) and
// returns the packets it sent before; it fails the test if it stays open.
func (c *client) closedAfter(d time.Duration) []*packet {
	c.t.Helper()
	var got []*packet
	deadline := time.Now().Add(d)
	for {
		p, err := c.read(time.Until(deadline))
		if errors.Is(err, errClosed) {
			return got
		}
		if err != nil && isTimeout(err) {
			c.t.Fatalf("connection still open after %v (got %v)", d, got)
		}
		if err != nil {
			// an undecodable packet: note and keep reading
			c.t.Logf("read: %v", err)
			continue
		}
		got = append(got, p)
	}
}

// closed reports whether the connection ends within d (packets are skipped).
func (c *client) closed(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		_, err := c.read(time.Until(deadline))
		if errors.Is(err, errClosed) {
			return true
		}
		if err != nil && isTimeout(err) {
			return false
		}
	}
}
