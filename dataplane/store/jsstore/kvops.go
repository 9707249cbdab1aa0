package jsstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Low-level KV operations on the sessions bucket's stream, so that every
// write returns its revision (the stream sequence) and can be conditional
// on the revision read (compare-and-set), deletions included.

const (
	kvOpHeader = "KV-Operation"
	kvPurge    = "PURGE"
)

// errConflict is a compare-and-set write that lost: the key changed since
// it was read.
var errConflict = errors.New("jsstore: concurrent update")

// isConflict reports a "wrong last sequence" answer to a conditional publish.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// msgGetResponse is the answer of $JS.API.STREAM.MSG.GET (served by the
// stream leader, so it reflects every acknowledged write).
type msgGetResponse struct {
	Message *struct {
		Seq  uint64 `json:"seq"`
		Hdrs []byte `json:"hdrs"`
		Data []byte `json:"data"`
	} `json:"message"`
	Error *struct {
		Code        int    `json:"code"`
		Description string `json:"description"`
	} `json:"error"`
}

// kvLast returns the value and revision of a key as the bucket's leader
// has it: (nil, rev) for a deleted key, (nil, 0) for one never written.
func (s *Store) kvLast(ctx context.Context, key string) ([]byte, uint64, error) {
	return s.leaderLast(ctx, "KV_"+s.bucket, s.kvSubject(key))
}

// leaderLast reads the last message of a KV stream's subject from the
// stream leader (nil data for a delete marker).
func (s *Store) leaderLast(ctx context.Context, stream, subject string) ([]byte, uint64, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	req, _ := json.Marshal(map[string]string{"last_by_subj": subject})
	m, err := s.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, req)
	if err != nil {
		return nil, 0, fmt.Errorf("jsstore: get %s: %w", subject, err)
	}
	var r msgGetResponse
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return nil, 0, fmt.Errorf("jsstore: get %s: %w", subject, err)
	}
	if r.Error != nil {
		if r.Error.Code == 404 {
			return nil, 0, nil
		}
		return nil, 0, fmt.Errorf("jsstore: get %s: %d %s", subject, r.Error.Code, r.Error.Description)
	}
	if r.Message == nil {
		return nil, 0, fmt.Errorf("jsstore: get %s: empty answer", subject)
	}
	if bytes.Contains(r.Message.Hdrs, []byte(kvOpHeader)) {
		return nil, r.Message.Seq, nil // DEL or PURGE marker
	}
	return r.Message.Data, r.Message.Seq, nil
}

func (s *Store) kvSubject(key string) string { return "$KV." + s.bucket + "." + key }

// kvWrite puts val under key (purge when purge is set). With expect set
// the write happens only if the key's last revision is *expect (0: never
// written); otherwise it returns errConflict. It returns the new revision.
func (s *Store) kvWrite(ctx context.Context, key string, val []byte, purge bool, expect *uint64) (uint64, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	m := &nats.Msg{Subject: s.kvSubject(key), Header: nats.Header{}, Data: val}
	if purge {
		m.Header.Set(kvOpHeader, kvPurge)
		m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	}
	var opts []jetstream.PublishOpt
	if expect != nil {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(*expect))
	}
	ack, err := s.js.PublishMsg(ctx, m, opts...)
	if err != nil {
		if isConflict(err) {
			return 0, fmt.Errorf("%w: %s", errConflict, key)
		}
		return 0, fmt.Errorf("jsstore: write %s: %w", key, err)
	}
	s.written.Add(uint64(len(key) + len(val)))
	return ack.Sequence, nil
}

// casRetries bounds the read-modify-write attempts of one record update.
const casRetries = 50

// casBackoff is the pause before attempt n+1 of a conflicting update.
func casBackoff(ctx context.Context, n int) error {
	d := time.Duration(n+1) * time.Millisecond
	if d > 20*time.Millisecond {
		d = 20 * time.Millisecond
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
