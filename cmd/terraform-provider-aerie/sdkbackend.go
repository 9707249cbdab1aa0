package main

import (
	"context"
	"errors"
)

// connectSDK builds the Backend on the Go SDK (sdk/).
func connectSDK(ctx context.Context, cfg providerConfig) (Backend, error) {
	return nil, errors.New("the SDK backend is not wired yet")
}
