package mqttload

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// FlowOptions describe a publish/subscribe run.
type FlowOptions struct {
	Publishers  int
	Subscribers int // each subscriber i receives the topics of publishers i, i+S, i+2S, …
	Messages    int // per publisher
	Payload     int // bytes
	QoS         byte
	Window      int // QoS≥1: publishes in flight per publisher before waiting
	User, Pass  func(k int) (string, string)
	Settle      time.Duration // stop waiting when nothing arrives for this long
}

// FlowResult is what a run measured.
type FlowResult struct {
	Sent       int64
	Received   int64
	Duration   time.Duration // first publish to last delivery
	Rate       float64       // distinct messages delivered per second
	Fraction   float64       // Distinct / Sent
	OutOfOrder int64         // deliveries older than one already seen from the same publisher
	Distinct   int64         // distinct messages received (Received less duplicates)
}

func (r FlowResult) String() string {
	return fmt.Sprintf("sent %d, received %d (%.2f%%; %d distinct), %.0f msg/s delivered over %s, %d out of order",
		r.Sent, r.Received, 100*r.Fraction, r.Distinct, r.Rate, r.Duration.Round(time.Millisecond), r.OutOfOrder)
}

// Flow runs Publishers paho clients publishing Messages each to topic
// "load/<publisher>", and Subscribers clients sharing the publishers' topics
// between them, then reports delivery counts and rate.
func Flow(ctx context.Context, addr string, o FlowOptions) (FlowResult, error) {
	if o.Subscribers <= 0 {
		o.Subscribers = 1
	}
	if o.Window <= 0 {
		o.Window = 64
	}
	if o.Settle <= 0 {
		o.Settle = 3 * time.Second
	}
	fc := newFlowCounter(o.Publishers, o.Messages)
	var subs []mqtt3.Client
	defer func() {
		for _, c := range subs {
			c.Disconnect(0)
		}
	}()
	for s := 0; s < o.Subscribers; s++ {
		c, err := flowClient(addr, o, fmt.Sprintf("load-sub-%d", s), 1000+s, true)
		if err != nil {
			return FlowResult{}, err
		}
		subs = append(subs, c)
		for p := s; p < o.Publishers; p += o.Subscribers {
			t := c.Subscribe(fmt.Sprintf("load/%d", p), o.QoS, fc.handle)
			if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
				return FlowResult{}, fmt.Errorf("subscribe: %v", t.Error())
			}
		}
	}
	pubs := make([]mqtt3.Client, o.Publishers)
	for p := range pubs {
		c, err := flowClient(addr, o, fmt.Sprintf("load-pub-%d", p), p, false)
		if err != nil {
			return FlowResult{}, err
		}
		pubs[p] = c
		defer c.Disconnect(0)
	}
	start := time.Now()
	total, err := publishFlow(ctx, pubs, o) // each message goes to exactly one subscriber
	if err != nil {
		return FlowResult{}, err
	}
	if err := fc.settle(ctx, total, o.Settle); err != nil {
		return FlowResult{}, err
	}
	end := time.Unix(0, fc.lastAt.Load())
	if end.Before(start) {
		end = time.Now()
	}
	r := FlowResult{Sent: total, Received: fc.received.Load(), Duration: end.Sub(start), OutOfOrder: fc.outOfOrder.Load(), Distinct: fc.distinct.Load()}
	if r.Duration > 0 {
		r.Rate = float64(r.Distinct) / r.Duration.Seconds()
	}
	if r.Sent > 0 {
		r.Fraction = float64(r.Distinct) / float64(r.Sent)
	}
	return r, nil
}

// flowClient connects one paho client of a flow as user k. Subscribers
// (ordered) handle messages in arrival order so order can be checked.
func flowClient(addr string, o FlowOptions, id string, k int, ordered bool) (mqtt3.Client, error) {
	var u, p string
	if o.User != nil {
		u, p = o.User(k)
	}
	opts := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetUsername(u).SetPassword(p).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(ordered).
		SetKeepAlive(60 * time.Second).SetMessageChannelDepth(10000).SetWriteTimeout(30 * time.Second).
		SetMaxResumePubInFlight(o.Window)
	c := mqtt3.NewClient(opts)
	t := c.Connect()
	if !t.WaitTimeout(15*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("connect %s: %v", id, t.Error())
	}
	return c, nil
}

// flowCounter counts a flow's deliveries: every one, the distinct ones
// (by publisher and sequence number) and those out of order.
type flowCounter struct {
	received, outOfOrder, lastAt, distinct atomic.Int64
	lastSeq                                []atomic.Int64
	seen                                   [][]atomic.Bool
}

func newFlowCounter(publishers, messages int) *flowCounter {
	fc := &flowCounter{lastSeq: make([]atomic.Int64, publishers), seen: make([][]atomic.Bool, publishers)}
	for i := range fc.seen {
		fc.seen[i] = make([]atomic.Bool, messages)
	}
	for i := range fc.lastSeq {
		fc.lastSeq[i].Store(-1)
	}
	return fc
}

// handle is the subscribers' message handler: the payload starts with the
// publisher (2 bytes) and the sequence number (4 bytes).
func (fc *flowCounter) handle(_ mqtt3.Client, m mqtt3.Message) {
	fc.received.Add(1)
	fc.lastAt.Store(time.Now().UnixNano())
	p := m.Payload()
	if len(p) < 8 {
		return
	}
	pub := int(uint32(p[0])<<8 | uint32(p[1]))
	seq := int64(uint32(p[2])<<24 | uint32(p[3])<<16 | uint32(p[4])<<8 | uint32(p[5]))
	if pub >= len(fc.lastSeq) {
		return
	}
	if seq >= 0 && seq < int64(len(fc.seen[pub])) && !fc.seen[pub][seq].Swap(true) {
		fc.distinct.Add(1)
	}
	if prev := fc.lastSeq[pub].Load(); seq < prev {
		fc.outOfOrder.Add(1)
	} else {
		fc.lastSeq[pub].Store(seq)
	}
}

// settle waits until total distinct messages have arrived or nothing has
// arrived for a whole settle period.
func (fc *flowCounter) settle(ctx context.Context, total int64, settle time.Duration) error {
	for fc.distinct.Load() < total {
		before := fc.received.Load()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(settle):
		}
		if fc.received.Load() == before {
			break
		}
	}
	return nil
}

// publishFlow publishes o.Messages from each publisher at once, o.Window
// in flight each, and returns how many were sent.
func publishFlow(ctx context.Context, pubs []mqtt3.Client, o FlowOptions) (int64, error) {
	var sent atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, len(pubs))
	for p, c := range pubs {
		wg.Add(1)
		go func(p int, c mqtt3.Client) {
			defer wg.Done()
			if err := publishSeq(ctx, p, c, o, &sent); err != nil {
				errs <- err
			}
		}(p, c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return sent.Load(), nil
}

// publishSeq publishes publisher p's numbered messages to "load/<p>".
func publishSeq(ctx context.Context, p int, c mqtt3.Client, o FlowOptions, sent *atomic.Int64) error {
	payload := make([]byte, max(o.Payload, 8))
	var window []mqtt3.Token
	for i := 0; i < o.Messages; i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		buf := append([]byte(nil), payload...)
		buf[0], buf[1] = byte(p>>8), byte(p)
		buf[2], buf[3], buf[4], buf[5] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		t := c.Publish(fmt.Sprintf("load/%d", p), o.QoS, false, buf)
		sent.Add(1)
		window = append(window, t)
		if len(window) >= o.Window {
			for _, w := range window {
				if !w.WaitTimeout(30*time.Second) || w.Error() != nil {
					return fmt.Errorf("publish: %v", w.Error())
				}
			}
			window = window[:0]
		}
	}
	for _, w := range window {
		w.WaitTimeout(30 * time.Second)
	}
	return nil
}
