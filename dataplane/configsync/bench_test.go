package configsync_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
)

// BenchmarkSnapshotLoad1M loads a disk snapshot of 1,000,000 device
// credentials spread over 100 instances, as a node does at start-up. It
// reports the load time, the live heap the loaded state holds per
// credential, and the file size.
func BenchmarkSnapshotLoad1M(b *testing.B) {
	const (
		nInstances = 100
		nCreds     = 1_000_000
	)
	path := filepath.Join(b.TempDir(), configsync.SnapshotFile)
	func() { // the source state is garbage once saved
		rng := rand.New(rand.NewPCG(1, 2))
		insts := make([]config.Instance, nInstances)
		for i := range insts {
			insts[i] = config.Instance{ID: fmt.Sprintf("i-%026d", i), OrgID: fmt.Sprintf("o-%026d", i%17),
				Status: config.StatusRunning, Credentials: make([]config.Credential, 0, nCreds/nInstances)}
		}
		expiry := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
		hashes := make([]byte, 32*nCreds)
		for i := range hashes {
			hashes[i] = byte(rng.Uint32())
		}
		for i := range nCreds {
			c := config.Credential{
				ID:           fmt.Sprintf("c-%026d", i), // the length of tenancy.NewID's IDs
				Username:     fmt.Sprintf("dev-%06d", i),
				SecretSHA256: hashes[i*32 : i*32+32 : i*32+32],
				Enabled:      i%50 != 0,
			}
			if i%10 == 0 {
				c.ExpiresAt = &expiry
			}
			if i%20 == 0 {
				c.ClientIDPattern = "${username}-*"
			}
			in := &insts[i%nInstances]
			in.Credentials = append(in.Credentials, c)
		}
		src := configsync.NewState()
		if err := src.Apply(config.Event{Revision: 1, Kind: config.KindSnapshot,
			Snapshot: &config.Snapshot{Revision: 1, NodeID: "n-bench", Instances: insts}}); err != nil {
			b.Fatal(err)
		}
		if err := src.SaveFile(path); err != nil {
			b.Fatal(err)
		}
	}()
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}

	var total time.Duration
	var heap float64
	b.ResetTimer()
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := configsync.NewState()
		start := time.Now()
		if err := s.LoadFile(path); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap += float64(after.HeapAlloc) - float64(before.HeapAlloc)
		if n := s.Credentials(); n != nCreds {
			b.Fatalf("loaded %d credentials", n)
		}
		runtime.KeepAlive(s)
	}
	b.StopTimer()
	b.ReportMetric(total.Seconds()/float64(b.N), "s/load")
	b.ReportMetric(heap/float64(b.N)/nCreds, "B/credential")
	b.ReportMetric(float64(fi.Size())/1e6, "file-MB")
}
