package jsstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/nats-io/nats-server/v2/server"
)

// Stored bytes per message (issue 20): how much a QoS 1 message costs on
// disk with 1 and with 10,000 persistent subscribers of the same filter.
const (
	bytesMsgs    = 2000
	bytesPayload = 256
	bytesFilter  = "fleet/+/telemetry"
	bytesWindow  = 32 // concurrent appends, one message each (the gateway's pattern)
)

// BenchmarkCellStoredBytes: a QoS 1 message is stored once per replica,
// never once per subscriber. For 1 and 10,000 persistent sessions
// subscribed (through Subscribe) to fleet/+/telemetry, 2000 messages of
// 256 B are appended and the growth of the store is divided by 2000:
//
//   - r3_*: the JetStream backend on a 3-server in-process cluster,
//     Replicas 3. r3_bytes is the instance stream's State.Bytes × its
//     replicas; r3_disk_bytes the real growth of the stream's directory
//     summed over the 3 servers' store dirs (message blocks and indexes;
//     the Raft WAL is logged, not reported: it is compacted).
//   - rocksdb_*: the RocksDB store. rocksdb_bytes is the WriteBatch bytes
//     handed to RocksDB (log record + index entries + counters);
//     rocksdb_disk_bytes the real growth of the store directory, which is
//     the WAL's (the index entries are written without WAL and reach disk,
//     LZ4-compressed, with the next memtable flush).
//
// The figures must stay flat from 1 to 10,000 subscribers (× replicas for
// R3); the benchmark fails when one grows by more than 20 %.
//
//	go test -run '^$' -bench BenchmarkCellStoredBytes -benchtime=1x ./dataplane/store/jsstore/
func BenchmarkCellStoredBytes(b *testing.B) {
	for range b.N {
		srvs := startCluster(b)
		s := openR3(b, srvs[0])
		waitAppend(b, s)
		r3 := map[int]bytesFigures{}
		for _, n := range []int{1, 10000} {
			inst := fmt.Sprintf("bytes-%05d", n) // same length: the subject is in every message
			start := time.Now()
			stale := createSessionsR3(b, srvs, inst, n)
			made := time.Since(start)
			m := openR3(b, srvs[n%3]) // a fresh store loads the n sessions from the bucket
			if got := len(m.SessionsOn(inst, bytesFilter)); got != n {
				b.Fatalf("%s: %d sessions on %s, want %d", inst, got, bytesFilter, n)
			}
			r3[n] = measureR3(b, srvs, m, inst)
			b.Logf("R3, %d subscribers (created in %s, %d stale reads of a just-saved session): %s", n, made.Round(time.Millisecond), stale, r3[n])
		}
		rocks := map[int]bytesFigures{}
		for _, n := range []int{1, 10000} {
			rocks[n] = measureRocks(b, n)
			b.Logf("RocksDB, %d subscribers: %s", n, rocks[n])
		}
		b.ReportMetric(r3[1].logical, "r3_bytes/msg_1sub")
		b.ReportMetric(r3[10000].logical, "r3_bytes/msg_10000subs")
		b.ReportMetric(r3[1].disk, "r3_disk_bytes/msg_1sub")
		b.ReportMetric(r3[10000].disk, "r3_disk_bytes/msg_10000subs")
		b.ReportMetric(rocks[1].logical, "rocksdb_bytes/msg_1sub")
		b.ReportMetric(rocks[10000].logical, "rocksdb_bytes/msg_10000subs")
		b.ReportMetric(rocks[1].disk, "rocksdb_disk_bytes/msg_1sub")
		b.ReportMetric(rocks[10000].disk, "rocksdb_disk_bytes/msg_10000subs")
		for name, f := range map[string]map[int]bytesFigures{"R3": r3, "RocksDB": rocks} {
			if f[10000].logical > 1.2*f[1].logical || f[10000].disk > 1.2*f[1].disk {
				b.Fatalf("%s: stored bytes per message grow with subscribers: 1 → %s; 10,000 → %s", name, f[1], f[10000])
			}
		}
	}
}

// bytesFigures are one case's bytes per message.
type bytesFigures struct {
	logical, disk float64
	other         string // what else was measured (logged)
}

func (f bytesFigures) String() string {
	return fmt.Sprintf("%.0f B/msg (store's count), %.0f B/msg on disk; %s", f.logical, f.disk, f.other)
}

// waitAppend waits until the cluster takes R3 writes (stream leader
// elections) on a warm-up instance.
func waitAppend(b *testing.B, s *Store) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.Append(context.Background(), []store.Message{{Instance: "warmup", Topic: "w", QoS: 1, Payload: []byte("w")}})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("R3 append: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// createSessionsR3 creates n persistent sessions subscribed to bytesFilter
// through the public API. The store serialises session changes per Store
// value, so 24 Store values (8 on each server) create them in parallel. It
// returns how often a session just saved was not found yet.
func createSessionsR3(b *testing.B, srvs []*server.Server, inst string, n int) (staleReads int64) {
	b.Helper()
	workers := min(n, 24)
	var next, stale atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		s := openR3(b, srvs[w%3])
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for {
				k := next.Add(1) - 1
				if k >= int64(n) {
					return
				}
				client := fmt.Sprintf("dev-%05d", k)
				if err := s.SaveSession(ctx, store.Session{Instance: inst, ClientID: client, ProtocolVersion: 5, Expiry: time.Hour}); err != nil {
					errs <- err
					return
				}
				// The sessions bucket's reads are direct gets, which a
				// follower replica may answer before it applied the put
				// just acknowledged: retry a missing session briefly.
				for try := 0; ; try++ {
					_, err := s.Subscribe(ctx, inst, client, store.Subscription{Filter: bytesFilter, QoS: 1})
					if err == nil {
						break
					}
					if !errors.Is(err, store.ErrNoSession) || try == 50 {
						errs <- err
						return
					}
					stale.Add(1)
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("create sessions: %v", err)
	}
	return stale.Load()
}

// appendWindow appends bytesMsgs messages of bytesPayload B to inst,
// bytesWindow at a time, each one its own Append.
func appendWindow(b *testing.B, be store.Backend, inst string) {
	b.Helper()
	payload := make([]byte, bytesPayload)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for range bytesWindow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := next.Add(1) - 1
				if k >= bytesMsgs {
					return
				}
				topic := fmt.Sprintf("fleet/truck-%04d/telemetry", k%1000)
				if _, err := be.Append(context.Background(), []store.Message{{Instance: inst, Topic: topic, QoS: 1, Payload: payload}}); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatalf("Append: %v", err)
	}
}

// measureR3 appends to inst through s and returns the growth per message
// of the instance stream (State.Bytes × replicas) and of its directories on
// the three servers.
func measureR3(b *testing.B, srvs []*server.Server, s *Store, inst string) bytesFigures {
	b.Helper()
	ctx := context.Background()
	stream := s.StreamName(inst)
	dirs0, all0 := streamDirBytes(srvs, stream), storeDirBytes(srvs)
	appendWindow(b, s, inst)
	st, err := s.js.Stream(ctx, stream)
	if err != nil {
		b.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if info.State.Msgs != bytesMsgs {
		b.Fatalf("%s holds %d messages, want %d", stream, info.State.Msgs, bytesMsgs)
	}
	// Followers apply asynchronously: wait until the directories stop growing.
	dirs := settleBytes(func() int64 { return streamDirBytes(srvs, stream) })
	all := storeDirBytes(srvs) - all0
	return bytesFigures{
		logical: float64(info.State.Bytes) * float64(info.Config.Replicas) / bytesMsgs,
		disk:    float64(dirs-dirs0) / bytesMsgs,
		other: fmt.Sprintf("stream %d B/msg per replica × %d replicas; whole store dirs (Raft WAL included) +%.0f B/msg",
			info.State.Bytes/bytesMsgs, info.Config.Replicas, float64(all)/bytesMsgs),
	}
}

// measureRocks creates n sessions on a fresh RocksDB store, appends, and
// returns the WriteBatch bytes and the directory growth per message.
func measureRocks(b *testing.B, n int) bytesFigures {
	b.Helper()
	dir := b.TempDir()
	rs, err := store.Open(dir, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer rs.Close()
	ctx := context.Background()
	const inst = "bytes"
	for k := range n {
		client := fmt.Sprintf("dev-%05d", k)
		if err := rs.SaveSession(ctx, store.Session{Instance: inst, ClientID: client, ProtocolVersion: 5, Expiry: time.Hour}); err != nil {
			b.Fatal(err)
		}
		if _, err := rs.Subscribe(ctx, inst, client, store.Subscription{Filter: bytesFilter, QoS: 1}); err != nil {
			b.Fatal(err)
		}
	}
	if got := len(rs.SessionsOn(inst, bytesFilter)); got != n {
		b.Fatalf("RocksDB: %d sessions on %s, want %d", got, bytesFilter, n)
	}
	io0, disk0 := rs.IO(), dirBytes(dir)
	appendWindow(b, rs, inst)
	io1 := rs.IO()
	disk := settleBytes(func() int64 { return dirBytes(dir) })
	return bytesFigures{
		logical: float64(io1.BytesWritten-io0.BytesWritten) / bytesMsgs,
		disk:    float64(disk-disk0) / bytesMsgs,
		other:   fmt.Sprintf("%.1f messages per group commit", float64(bytesMsgs)/float64(io1.Commits-io0.Commits)),
	}
}

// settleBytes polls size until it is unchanged for 300 ms (at most 10 s).
func settleBytes(size func() int64) int64 {
	last := size()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(300 * time.Millisecond)
		cur := size()
		if cur == last {
			break
		}
		last = cur
	}
	return last
}

// streamDirBytes sums the sizes of the files under every directory named
// stream in the servers' store dirs (one per replica).
func streamDirBytes(srvs []*server.Server, stream string) int64 {
	var n int64
	for _, ns := range srvs {
		root := ns.JetStreamConfig().StoreDir
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() && d.Name() == stream {
				n += dirBytes(p)
				return filepath.SkipDir
			}
			return nil
		})
	}
	return n
}

// storeDirBytes sums the sizes of the files in the servers' store dirs.
func storeDirBytes(srvs []*server.Server) int64 {
	var n int64
	for _, ns := range srvs {
		n += dirBytes(ns.JetStreamConfig().StoreDir)
	}
	return n
}

// dirBytes sums the sizes of the regular files under dir.
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			n += fi.Size()
		}
		return nil
	})
	return n
}
