package store_test

import (
	"testing"

	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/dataplane/store/storetest"
)

// TestConformance runs the store.Backend suite against the RocksDB store.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Backend {
		s, err := store.Open(t.TempDir(), store.Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
