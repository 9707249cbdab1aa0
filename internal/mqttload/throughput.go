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
	creds := func(k int) (string, string) {
		if o.User == nil {
			return "", ""
		}
		return o.User(k)
	}
	var received atomic.Int64
	var outOfOrder atomic.Int64
	var lastAt atomic.Int64
	lastSeq := make([]atomic.Int64, o.Publishers)
	seen := make([][]atomic.Bool, o.Publishers)
	for i := range seen {
		seen[i] = make([]atomic.Bool, o.Messages)
	}
	var distinct atomic.Int64
	for i := range lastSeq {
		lastSeq[i].Store(-1)
	}
	newClient := func(id string, k int, ordered bool) (mqtt3.Client, error) {
		u, p := creds(k)
		// Subscribers handle messages in arrival order so order can be checked.
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
	var subs []mqtt3.Client
	defer func() {
		for _, c := range subs {
			c.Disconnect(0)
		}
	}()
	for s := 0; s < o.Subscribers; s++ {
		c, err := newClient(fmt.Sprintf("load-sub-%d", s), 1000+s, true)
		if err != nil {
			return FlowResult{}, err
		}
		subs = append(subs, c)
		handler := func(_ mqtt3.Client, m mqtt3.Message) {
			received.Add(1)
			lastAt.Store(time.Now().UnixNano())
			p := m.Payload()
			if len(p) >= 8 {
				pub := int(uint32(p[0])<<8 | uint32(p[1]))
				seq := int64(uint32(p[2])<<24 | uint32(p[3])<<16 | uint32(p[4])<<8 | uint32(p[5]))
				if pub < len(lastSeq) {
					if seq >= 0 && seq < int64(len(seen[pub])) && !seen[pub][seq].Swap(true) {
						distinct.Add(1)
					}
					if prev := lastSeq[pub].Load(); seq < prev {
						outOfOrder.Add(1)
					} else {
						lastSeq[pub].Store(seq)
					}
				}
			}
		}
		for p := s; p < o.Publishers; p += o.Subscribers {
			t := c.Subscribe(fmt.Sprintf("load/%d", p), o.QoS, handler)
			if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
				return FlowResult{}, fmt.Errorf("subscribe: %v", t.Error())
			}
		}
	}
	pubs := make([]mqtt3.Client, o.Publishers)
	for p := range pubs {
		c, err := newClient(fmt.Sprintf("load-pub-%d", p), p, false)
		if err != nil {
			return FlowResult{}, err
		}
		pubs[p] = c
		defer c.Disconnect(0)
	}
	var sent atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, o.Publishers)
	for p, c := range pubs {
		wg.Add(1)
		go func(p int, c mqtt3.Client) {
			defer wg.Done()
			payload := make([]byte, max(o.Payload, 8))
			var window []mqtt3.Token
			for i := 0; i < o.Messages; i++ {
				if ctx.Err() != nil {
					errs <- ctx.Err()
					return
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
							errs <- fmt.Errorf("publish: %v", w.Error())
							return
						}
					}
					window = window[:0]
				}
			}
			for _, w := range window {
				w.WaitTimeout(30 * time.Second)
			}
		}(p, c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return FlowResult{}, err
		}
	}
	total := sent.Load() * 1 // each message goes to exactly one subscriber
	for distinct.Load() < total {
		before := received.Load()
		select {
		case <-ctx.Done():
			return FlowResult{}, ctx.Err()
		case <-time.After(o.Settle):
		}
		if received.Load() == before {
			break
		}
	}
	end := time.Unix(0, lastAt.Load())
	if end.Before(start) {
		end = time.Now()
	}
	r := FlowResult{Sent: total, Received: received.Load(), Duration: end.Sub(start), OutOfOrder: outOfOrder.Load(), Distinct: distinct.Load()}
	if r.Duration > 0 {
		r.Rate = float64(r.Distinct) / r.Duration.Seconds()
	}
	if r.Sent > 0 {
		r.Fraction = float64(r.Distinct) / float64(r.Sent)
	}
	return r, nil
}
