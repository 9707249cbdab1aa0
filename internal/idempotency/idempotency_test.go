package idempotency

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/aeriemq/aerie/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestStore covers what the HTTP tests cannot reach quickly: a request
// still running, and expiry after 24 h.
func TestStore(t *testing.T) {
	db := pgtest.New(t)
	s := NewStore(db.Pool)
	now := time.Now()
	s.now = func() time.Time { return now }
	ctx := context.Background()

	t.Run("first claim runs, a concurrent one is told it is in flight", func(t *testing.T) {
		if body, err := s.Begin(ctx, "user:u", "k1", []byte("h1")); err != nil || body != nil {
			t.Fatalf("first claim = %v, %v", body, err)
		}
		if _, err := s.Begin(ctx, "user:u", "k1", []byte("h1")); !errors.Is(err, ErrInFlight) {
			t.Fatalf("second claim while running: %v", err)
		}
		if _, err := s.Begin(ctx, "user:u", "k1", []byte("h2")); !errors.Is(err, ErrMismatch) {
			t.Fatalf("other body: %v", err)
		}
	})
	t.Run("finished response is replayed", func(t *testing.T) {
		if err := s.Finish(ctx, "user:u", "k1", 201, []byte("sealed")); err != nil {
			t.Fatal(err)
		}
		body, err := s.Begin(ctx, "user:u", "k1", []byte("h1"))
		if err != nil || string(body) != "sealed" {
			t.Fatalf("replay = %q, %v", body, err)
		}
	})
	t.Run("abandoned claim can be retried", func(t *testing.T) {
		if _, err := s.Begin(ctx, "user:u", "k2", []byte("h")); err != nil {
			t.Fatal(err)
		}
		s.Abandon(ctx, "user:u", "k2")
		if body, err := s.Begin(ctx, "user:u", "k2", []byte("other")); err != nil || body != nil {
			t.Fatalf("claim after abandon = %v, %v", body, err)
		}
	})
	t.Run("after 24 hours the key is free again and purged", func(t *testing.T) {
		now = now.Add(TTL + time.Minute)
		if body, err := s.Begin(ctx, "user:u", "k1", []byte("different")); err != nil || body != nil {
			t.Fatalf("claim after expiry = %v, %v", body, err)
		}
		now = now.Add(TTL + time.Minute)
		n, err := s.PurgeExpired(ctx)
		if err != nil || n != 2 {
			t.Fatalf("purged %d, %v; want 2", n, err)
		}
	})
	t.Run("sealed bodies open only with the same key and scope", func(t *testing.T) {
		sealed := Seal("key", "user:u", []byte("secret response"))
		if got, err := Open("key", "user:u", sealed); err != nil || string(got) != "secret response" {
			t.Fatalf("open = %q, %v", got, err)
		}
		if _, err := Open("other", "user:u", sealed); err == nil {
			t.Fatal("opened with another idempotency key")
		}
		if _, err := Open("key", "user:v", sealed); err == nil {
			t.Fatal("opened in another scope")
		}
	})
}
