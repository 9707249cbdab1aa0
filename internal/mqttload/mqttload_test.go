package mqttload

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestAgainstMosquitto checks the load tools against the baseline broker:
// they are what the benchmarks trust, so they must count correctly.
func TestAgainstMosquitto(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := StartMosquitto(ctx, t.TempDir(), MosquittoOptions{Users: map[string]string{"dev": "secret-1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	creds := func(int) (string, string) { return "dev", "secret-1" }

	t.Run("wrong password is refused", func(t *testing.T) {
		_, err := Connect(ctx, m.Addr, "x", "dev", "wrong")
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("err = %v, want ErrRefused", err)
		}
	})
	t.Run("idle connections are held and cost memory", func(t *testing.T) {
		before, err := RSS(m.Pid())
		if err != nil {
			t.Fatal(err)
		}
		idle, err := OpenIdle(ctx, m.Addr, 200, 20, creds)
		if err != nil {
			t.Fatal(err)
		}
		defer idle.Close()
		after, _ := RSS(m.Pid())
		if after < before {
			t.Errorf("RSS fell from %d to %d with 200 more connections", before, after)
		}
	})
	t.Run("connect rate", func(t *testing.T) {
		rate, err := ConnectRate(ctx, m.Addr, 200, 10, creds)
		if err != nil || rate <= 0 {
			t.Fatalf("rate %v err %v", rate, err)
		}
	})
	t.Run("qos1 flow delivers everything in order", func(t *testing.T) {
		r, err := Flow(ctx, m.Addr, FlowOptions{Publishers: 3, Subscribers: 1, Messages: 500, Payload: 100, QoS: 1, User: creds})
		if err != nil {
			t.Fatal(err)
		}
		if r.Sent != 1500 || r.Received != 1500 || r.OutOfOrder != 0 {
			t.Fatalf("%s", r)
		}
	})
}
