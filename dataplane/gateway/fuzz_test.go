package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
)

// Fuzz targets for the packet read path devices reach: mochi's fixed
// header / remaining length read and the CONNECT, PUBLISH, SUBSCRIBE, …
// decoders, with the gateway's own server, options and hooks. `go test`
// runs the seeds (make test); `make fuzz` runs each target for FUZZTIME.
//
// Each asserts that nothing panics and that what a connection makes the
// node allocate follows the bytes it sent, never a length it claims:
// fuzzAllocBudget.

// fuzzQuotas are the quotas of the fuzzed instance: max_payload_bytes 1000
// makes its packet bound 1000 + packetHeaderRoom.
var fuzzQuotas = config.Quotas{MaxPayloadBytes: 1000, MaxSubscriptionsPerClient: 10, MaxTopicLevels: 8, MaxInflight: 16, MaxRetainedMessages: 10}

// fuzzAllocBudget is the most reading (and handling) input may make the
// node allocate: a fixed allowance (it covers a SUBSCRIBE's list of up to
// packets.MaxFilters decoded filters, and allocations of the server's own
// goroutines meanwhile), plus a small multiple of the bytes actually sent
// (the packet's buffer and values decoded from it). A length the input
// claims but does not send costs nothing.
func fuzzAllocBudget(sent int) uint64 {
	return 384<<10 + 4*uint64(sent)
}

// feedConn is a net.Conn that reads the fuzz input, then EOF, and discards
// what is written.
type feedConn struct {
	r *bytes.Reader
}

func (c *feedConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *feedConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *feedConn) Close() error                { return nil }
func (c *feedConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1883} }
func (c *feedConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *feedConn) SetDeadline(time.Time) error      { return nil }
func (c *feedConn) SetReadDeadline(time.Time) error  { return nil }
func (c *feedConn) SetWriteDeadline(time.Time) error { return nil }

var (
	fuzzGWOnce sync.Once
	fuzzGW     *Gateway
)

// fuzzGateway is a gateway without listeners (connections are handed to it
// directly) whose default instance admits anonymous devices, so any
// well-formed CONNECT is authenticated and the fuzzer reaches the
// post-CONNECT packets too. One per fuzzing process.
func fuzzGateway(tb testing.TB) *Gateway {
	fuzzGWOnce.Do(func() {
		st := configsync.NewState()
		snap := config.Snapshot{Revision: 1, NodeID: "n-1", Instances: []config.Instance{
			{ID: "i-fuzz", OrgID: "o-f", Status: config.StatusRunning, AllowAnonymous: true, Quotas: fuzzQuotas,
				ACL: []config.ACLRule{{ID: "r", Effect: config.EffectAllow, Action: config.ActionAll, Filter: "#"}}},
		}}
		if err := st.Apply(config.Event{Revision: 1, Kind: config.KindSnapshot, Snapshot: &snap}); err != nil {
			tb.Fatal(err)
		}
		gw, err := New(Options{Config: st, DefaultInstance: "i-fuzz", Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			tb.Fatal(err)
		}
		if err := gw.Start(); err != nil {
			tb.Fatal(err)
		}
		fuzzGW = gw
	})
	return fuzzGW
}

// resetFuzzGateway forgets what earlier inputs left behind (sessions,
// their subscriptions and messages in flight, retained messages), so that
// each input is measured on its own: a takeover of a session with many
// subscriptions legitimately costs more than a first connection.
func resetFuzzGateway(gw *Gateway) {
	for id, cl := range gw.srv.Clients.GetAll() {
		cl.Stop(nil)
		gw.srv.UnsubscribeClient(cl)
		cl.ClearInflights()
		gw.srv.Clients.Delete(id)
	}
	for topic := range gw.srv.Topics.Retained.GetAll() {
		gw.srv.Topics.RetainMessage(packets.Packet{TopicName: topic})
	}
}

// allocated runs f and returns the bytes the process allocated meanwhile.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// withinBudget runs f (which handles sent input bytes) and reports what it
// allocated and whether that is within fuzzAllocBudget. Other goroutines
// (the server's own, the fuzzing engine's) allocate meanwhile too: over
// budget, f runs again, up to three times, and the least is what counts.
// Before each run the fuzzing gateway forgets what earlier inputs left.
func withinBudget(sent int, f func()) (uint64, bool) {
	least := uint64(1<<64 - 1)
	for range 3 {
		resetFuzzGateway(fuzzGW)
		least = min(least, allocated(f))
		if least <= fuzzAllocBudget(sent) {
			return least, true
		}
	}
	return least, false
}

// hangGuard makes an input that keeps the node busy for 10 s a crash, so
// that the fuzzing engine reports (and saves) it.
func hangGuard(data []byte) (stop func() bool) {
	return time.AfterFunc(10*time.Second, func() {
		panic(fmt.Sprintf("input %q: still being handled after 10 s", data))
	}).Stop
}

// fuzzSeeds are well-formed and hostile byte streams a device might send.
func fuzzSeeds() [][]byte {
	connect := func(version byte, props []byte) []byte {
		var b bytes.Buffer
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: version,
			Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: "fuzz-1"}}
		if version == 5 {
			pk.Properties = packets.Properties{SessionExpiryInterval: 60, SessionExpiryIntervalFlag: true, ReceiveMaximum: 10,
				User: []packets.UserProperty{{Key: "k", Val: "v"}}}
		}
		_ = pk.ConnectEncode(&b)
		out := b.Bytes()
		if props != nil { // a v5 CONNECT with raw properties
			out = append([]byte{0x10, byte(10 + 1 + len(props) + 2 + 6)}, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 30)
			out = append(out, byte(len(props)))
			out = append(out, props...)
			out = append(out, 0, 6, 'f', 'u', 'z', 'z', '-', '1')
		}
		return out
	}
	enc := func(version byte, pk packets.Packet) []byte {
		var b bytes.Buffer
		pk.ProtocolVersion = version
		var err error
		switch pk.FixedHeader.Type {
		case packets.Publish:
			err = pk.PublishEncode(&b)
		case packets.Subscribe:
			err = pk.SubscribeEncode(&b)
		case packets.Unsubscribe:
			err = pk.UnsubscribeEncode(&b)
		case packets.Puback:
			err = pk.PubackEncode(&b)
		case packets.Pingreq:
			err = pk.PingreqEncode(&b)
		case packets.Disconnect:
			err = pk.DisconnectEncode(&b)
		}
		if err != nil {
			panic(err)
		}
		return b.Bytes()
	}
	session := func(version byte) []byte {
		s := connect(version, nil)
		s = append(s, enc(version, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
			Filters: packets.Subscriptions{{Filter: "a/+/c", Qos: 1}, {Filter: "#", Qos: 0}}})...)
		s = append(s, enc(version, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 2,
			TopicName: "a/b/c", Payload: []byte("hello")})...)
		s = append(s, enc(version, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "t", Payload: []byte("x")})...)
		s = append(s, enc(version, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: 3,
			Filters: packets.Subscriptions{{Filter: "#"}}})...)
		s = append(s, enc(version, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})...)
		return append(s, enc(version, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})...)
	}
	huge := []byte{0x10, 0xff, 0xff, 0xff, 0x7f}
	return [][]byte{
		session(4),
		session(5),
		huge, // CONNECT claiming 256 MiB
		append(huge, bytes.Repeat([]byte{'x'}, 512)...),
		{0x10, 0xff, 0xff, 0xff, 0xff, 0x01},                                   // malformed remaining length
		{0x30, 0x05, 0x00, 0x01, 't', 'x', 'y'},                                // PUBLISH before CONNECT
		connect(5, []byte{0x21, 0x00, 0x00}),                                   // Receive Maximum 0
		append(connect(5, nil), 0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 'a'), // v5 SUBSCRIBE without options byte
		append(connect(4, nil), 0x30, 0xff, 0xff, 0xff, 0x7f, 0x00),            // after auth: PUBLISH claiming 256 MiB
		append(connect(5, nil), connect(5, nil)...),                            // second CONNECT
		connect(5, bytes.Repeat([]byte{0x26, 0, 0, 0, 0}, 20)),                 // many empty user properties
	}
}

// FuzzConnection hands the input to the gateway as one connection's bytes,
// through mochi's own CONNECT handling, authentication, read loop and
// packet handling.
func FuzzConnection(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		gw := fuzzGateway(t)
		defer hangGuard(data)()
		n, ok := withinBudget(len(data), func() {
			_ = gw.srv.EstablishConnection("fuzz", &feedConn{r: bytes.NewReader(data)})
		})
		if !ok {
			t.Fatalf("%d input bytes made the node allocate %d bytes (budget %d)", len(data), n, fuzzAllocBudget(len(data)))
		}
	})
}

// FuzzPacketDecode reads the input as a stream of packets from a connected
// client (MQTT 3.1.1 or 5, by the first byte) with mochi's packet read
// path: fixed header, remaining length, the client's packet bound, then
// the decoder of the packet's type. A malformed packet is skipped, as its
// bytes were consumed, so that the fuzzer reaches the next one.
func FuzzPacketDecode(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(append([]byte{4}, s...))
		f.Add(append([]byte{5}, s...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		gw := fuzzGateway(t)
		defer hangGuard(data)()
		version := byte(4)
		if data[0]&1 == 1 {
			version = 5
		}
		limit := packetLimit(fuzzQuotas)
		var claimed int
		n, ok := withinBudget(len(data), func() {
			claimed = 0
			cl := gw.srv.NewClient(&feedConn{r: bytes.NewReader(data[1:])}, "fuzz", "fuzz", false)
			cl.Properties.ProtocolVersion = version
			cl.SetMaximumPacketSize(limit)
			defer cl.Stop(nil)
			for {
				var fh packets.FixedHeader
				if err := cl.ReadFixedHeader(&fh); err != nil {
					if err == packets.ErrPacketTooLarge && fh.Remaining+1 <= int(limit) {
						t.Fatalf("a %d-byte packet was refused under the bound %d", fh.Remaining, limit)
					}
					return
				}
				if fh.Remaining+1 > int(limit) {
					t.Fatalf("a packet claiming %d bytes was accepted over the bound %d", fh.Remaining, limit)
				}
				claimed += fh.Remaining
				if _, err := cl.ReadPacket(&fh); errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					return
				}
			}
		})
		if !ok {
			t.Fatalf("%d input bytes (%d claimed) made the node allocate %d bytes (budget %d)", len(data), claimed, n, fuzzAllocBudget(len(data)))
		}
	})
}

// TestDecodedPacketsAreBounded: the decoded form of a packet cannot be
// made much larger than the packet: a CONNECT (read before
// authentication) with thousands of user properties is refused at the
// 129th, and a SUBSCRIBE with more than packets.MaxFilters filters is
// refused when counted, before its list is allocated (each took ~60 times
// its size on the wire).
func TestDecodedPacketsAreBounded(t *testing.T) {
	gw := fuzzGateway(t)
	props := bytes.Repeat([]byte{0x26, 0, 0, 0, 0}, 13000)
	subscribe := func(filters int) []byte {
		body := []byte{0, 1}
		for range filters {
			body = append(body, 0, 1, 'a', 0)
		}
		return append(append([]byte{0x82}, varint(len(body))...), body...)
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"CONNECT with 13,000 user properties", rawConnect(5, "amp", "nobody", "pw", props)},
		{"SUBSCRIBE with 15,000 filters", append(rawConnect(4, "amp", "", "", nil), subscribe(15000)...)},
		{"SUBSCRIBE with packets.MaxFilters filters", append(rawConnect(4, "amp", "", "", nil), subscribe(packets.MaxFilters)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, ok := withinBudget(len(tc.in), func() {
				_ = gw.srv.EstablishConnection("fuzz", &feedConn{r: bytes.NewReader(tc.in)})
			})
			t.Logf("%d bytes in, %d allocated", len(tc.in), n)
			if !ok {
				t.Fatalf("%d input bytes made the node allocate %d bytes (budget %d)", len(tc.in), n, fuzzAllocBudget(len(tc.in)))
			}
		})
	}
}

// TestNodeKeepsServingAfterHostileInput: the fuzz seeds and the saved
// corpus (testdata/fuzz/FuzzConnection), sent over real sockets to a node
// with anonymous devices allowed (so that post-CONNECT packets are
// handled too), leave it serving: a device then connects, subscribes,
// publishes and receives its message.
func TestNodeKeepsServingAfterHostileInput(t *testing.T) {
	b := newBundle(t) // default instance i-anon admits anonymous devices
	inputs := fuzzSeeds()
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzConnection", "*"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
		q, ok := strings.CutPrefix(lines[len(lines)-1], "[]byte(")
		if !ok {
			t.Fatalf("%s: not a []byte corpus entry", f)
		}
		s, err := strconv.Unquote(strings.TrimSuffix(q, ")"))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		inputs = append(inputs, []byte(s))
	}
	for _, in := range inputs {
		c, err := net.DialTimeout("tcp", b.gw.MQTTAddr(), 5*time.Second)
		if err != nil {
			t.Fatalf("the node stopped accepting connections: %v", err)
		}
		_, _ = c.Write(in)
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, _ = io.Copy(io.Discard, c) // until the node closes or the deadline
		c.Close()
	}
	got := make(chan string, 1)
	dev, err := b.v3(t, "after-hostile", "dev@i-aaaa", "pw-dev", func(topic string, _ []byte) { got <- topic })
	if err != nil {
		t.Fatalf("connect after hostile input: %v", err)
	}
	if tok := dev.Subscribe("still/here", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	if tok := dev.Publish("still/here", 1, false, "ok"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	select {
	case topic := <-got:
		if topic != "still/here" {
			t.Fatalf("got %q", topic)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the message did not arrive")
	}
	t.Logf("%d hostile inputs sent, the node still serves", len(inputs))
}

// BenchmarkHostileConnect: what one unauthenticated connection claiming a
// 256 MiB CONNECT (and sending 4 KiB more) makes the node allocate, and
// what a CONNECT with 13,000 user properties does (refused at the 129th).
func BenchmarkHostileConnect(b *testing.B) {
	gw := fuzzGateway(b)
	claim := append([]byte{0x10, 0xff, 0xff, 0xff, 0x7f}, make([]byte, 4096)...)
	props := rawConnect(5, "amp", "nobody", "pw", bytes.Repeat([]byte{0x26, 0, 0, 0, 0}, 13000))
	for _, bc := range []struct {
		name string
		in   []byte
	}{{"Claim256MiB", claim}, {"UserProperties13000", props}} {
		b.Run(bc.name, func(b *testing.B) {
			var total uint64
			for b.Loop() {
				total += allocated(func() { _ = gw.srv.EstablishConnection("fuzz", &feedConn{r: bytes.NewReader(bc.in)}) })
			}
			b.ReportMetric(float64(total)/float64(b.N), "alloc-B/conn")
		})
	}
}
