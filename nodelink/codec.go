package nodelink

import (
	"encoding/json"
	"fmt"
)

// EncodeEvent is an Event as it travels (and as the control plane keeps it
// in its outbox until the node takes it).
func EncodeEvent(ev Event) ([]byte, error) {
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode config event: %w", err)
	}
	return b, nil
}

// DecodeEvent reads what EncodeEvent wrote.
func DecodeEvent(b []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(b, &ev); err != nil {
		return Event{}, fmt.Errorf("decode config event: %w", err)
	}
	return ev, nil
}
