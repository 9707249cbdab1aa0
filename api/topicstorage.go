package api

import (
	"context"

	"github.com/aeriemq/aerie/billing"
)

// usageOut is the usage API's answer: the period's priced draft, and the
// latest stored bytes of each of the org's provisioned topics (a gauge
// from the nodes' usage reports, as of now whatever the period).
type usageOut struct {
	billing.Draft
	TopicStorage []billing.TopicStorage `json:"topic_storage"`
}

// latestTopicStorage lists the latest stored bytes of the org's topics (of one
// instance, or all with instanceID ""); empty without a meter.
func (a *API) latestTopicStorage(ctx context.Context, orgID, instanceID string) ([]billing.TopicStorage, error) {
	if a.meter == nil {
		return []billing.TopicStorage{}, nil
	}
	return a.meter.TopicStorage(ctx, orgID, instanceID)
}
