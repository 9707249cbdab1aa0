package jsstore

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Dead letters of forwarding rules (store.DeadLetterStore): the stream
// "<PREFIX>_DEAD" (created on first use, replicated like the others) holds
// one message per dead letter on the subject
//
//	<prefix>.d.<inst>.<rule>.<offset>
//
// with MaxMsgsPerSubject=1, so a Put of the same offset replaces it and
// a delete is a purge of its subject (no marker left). A list reads the
// rule's subjects (at most forward.MaxDeadLetters) and sorts them by
// offset; a count is the stream's subject count under the rule's filter.

type deadLetters struct {
	mu     sync.Mutex
	stream jetstream.Stream
}

// deadRecord is a dead letter's message body.
type deadRecord struct {
	Attempts int    `json:"a"`
	DeadAt   int64  `json:"t"` // unix ms
	Reason   string `json:"r"`
	Msg      []byte `json:"m"` // store.EncodeRecord
}

func (s *Store) deadStreamName() string { return s.name + "_DEAD" }

func (s *Store) deadFilter(inst, rule string) string {
	return s.sub + ".d." + tok(inst) + "." + tok(rule) + ".>"
}

func (s *Store) deadSubject(inst, rule string, off uint64) string {
	return s.sub + ".d." + tok(inst) + "." + tok(rule) + "." + strconv.FormatUint(off, 10)
}

// deadStream returns the dead-letter stream, creating it when create is
// set (nil, nil when it does not exist and create is not set).
func (s *Store) deadStream(ctx context.Context, create bool) (jetstream.Stream, error) {
	s.dl.mu.Lock()
	defer s.dl.mu.Unlock()
	if s.dl.stream != nil {
		return s.dl.stream, nil
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	var st jetstream.Stream
	var err error
	if create {
		st, err = s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: s.deadStreamName(), Subjects: []string{s.sub + ".d.>"}, MaxMsgsPerSubject: 1,
			Storage: jetstream.FileStorage, Replicas: s.opts.Replicas, AllowDirect: true, Discard: jetstream.DiscardOld,
		})
	} else {
		st, err = s.js.Stream(ctx, s.deadStreamName())
		if isNotFound(err) {
			return nil, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("jsstore: dead-letter stream: %w", err)
	}
	s.dl.stream = st
	return st, nil
}

// PutDeadLetters adds (or replaces) entries of a rule's list, durably.
func (s *Store) PutDeadLetters(ctx context.Context, instance, rule string, ds []store.DeadLetter) error {
	if err := store.CheckName("instance", instance); err != nil {
		return err
	}
	if err := store.CheckName("rule", rule); err != nil {
		return err
	}
	if err := s.check(); err != nil {
		return err
	}
	if _, err := s.deadStream(ctx, true); err != nil {
		return err
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	for _, d := range ds {
		b, err := json.Marshal(deadRecord{Attempts: d.Attempts, DeadAt: d.DeadAt.UnixMilli(), Reason: d.Reason,
			Msg: store.EncodeRecord(nil, d.Message)})
		if err != nil {
			return fmt.Errorf("jsstore: encode dead letter: %w", err)
		}
		if _, err := s.js.PublishMsg(ctx, &nats.Msg{Subject: s.deadSubject(instance, rule, d.Offset), Data: b}); err != nil {
			return fmt.Errorf("jsstore: put dead letter: %w", err)
		}
		s.written.Add(uint64(len(b)))
	}
	return nil
}

// DeadLetters returns up to limit entries of a rule's list with offsets
// above after, by offset.
func (s *Store) DeadLetters(ctx context.Context, instance, rule string, after uint64, limit int) ([]store.DeadLetter, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	var out []store.DeadLetter
	err := s.scanStream(ctx, s.deadStreamName(), s.deadFilter(instance, rule), func(r rawMsg) error {
		subj := r.hdr.Get(nats.JSSubject)
		off, err := strconv.ParseUint(subj[strings.LastIndexByte(subj, '.')+1:], 10, 64)
		if err != nil || off <= after {
			return nil //nolint:nilerr // not ours or before the page
		}
		var rec deadRecord
		if err := json.Unmarshal(r.data, &rec); err != nil {
			return fmt.Errorf("jsstore: dead letter %d of %s: %w", off, rule, err)
		}
		m, err := store.DecodeRecord(rec.Msg)
		if err != nil {
			return fmt.Errorf("jsstore: dead letter %d of %s: %w", off, rule, err)
		}
		out = append(out, store.DeadLetter{Offset: off, Message: m, Reason: rec.Reason, Attempts: rec.Attempts,
			DeadAt: time.UnixMilli(rec.DeadAt).UTC()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Offset < out[j].Offset })
	if len(out) > limit {
		out = out[:max(limit, 0)]
	}
	return out, nil
}

// CountDeadLetters counts a rule's dead letters.
func (s *Store) CountDeadLetters(ctx context.Context, instance, rule string) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	st, err := s.deadStream(ctx, false)
	if err != nil || st == nil {
		return 0, err
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(s.deadFilter(instance, rule)))
	if err != nil {
		return 0, fmt.Errorf("jsstore: count dead letters of %s: %w", rule, err)
	}
	return len(info.State.Subjects), nil
}

// DeleteDeadLetters removes entries of a rule's list: the given offsets,
// or every entry when offsets is nil.
func (s *Store) DeleteDeadLetters(ctx context.Context, instance, rule string, offsets []uint64) error {
	if err := s.check(); err != nil {
		return err
	}
	st, err := s.deadStream(ctx, false)
	if err != nil || st == nil {
		return err
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	subjects := []string{s.deadFilter(instance, rule)}
	if offsets != nil {
		subjects = subjects[:0]
		for _, o := range offsets {
			subjects = append(subjects, s.deadSubject(instance, rule, o))
		}
	}
	for _, subj := range subjects {
		if err := st.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
			return fmt.Errorf("jsstore: delete dead letters of %s: %w", rule, err)
		}
	}
	return nil
}
