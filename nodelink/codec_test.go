package nodelink_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/aeriemq/aerie/nodelink"
)

// Every field of an Event survives the trip through the wire encoding
// (and the outbox, which keeps events encoded the same way).
func TestEventRoundTrip(t *testing.T) {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	strict := true
	in := nodelink.Instance{ID: "i-1", OrgID: "o-1", Status: nodelink.StatusRunning, AllowAnonymous: true, Limited: nodelink.LimitThrottle,
		Quotas: nodelink.Quotas{MaxConnections: 1, MaxConnectsPerSecond: 2, MaxPublishPerSecond: 3, MaxPublishPerSecondPerClient: 4,
			MaxBytesPerSecond: 5, MaxPayloadBytes: 6, MaxSubscriptionsPerClient: 7, MaxTopicLevels: 8, MaxRetainedMessages: 9,
			MaxSessionExpirySeconds: 10, MaxInflight: 11, MaxBacklogSeconds: 12, MaxThrottleSeconds: 13},
		Credentials: []nodelink.Credential{
			{ID: "c-1", Username: "dev", SecretSHA256: make([]byte, 32), ClientIDPattern: "dev-*", Enabled: true, ExpiresAt: &exp},
			{ID: "c-2", Username: "pw", PasswordHash: "$2a$10$abc"},
		},
		ACL:           []nodelink.ACLRule{{ID: "r-1", Effect: nodelink.EffectDeny, Action: nodelink.ActionPublish, Filter: "a/#", CredentialID: "c-1", Position: 2}},
		TokenKeys:     []nodelink.TokenKey{{KID: "k", Algorithm: "EdDSA", PublicKey: []byte{1, 2, 3}}},
		RevokedTokens: []nodelink.RevokedToken{{JTI: "j", ExpiresAt: exp}},
		Topics:        []nodelink.Topic{{ID: "tp", Name: "t", Filter: "f/+", RetentionSeconds: 60, RetentionBytes: 1 << 20, MaxQoS: 1, RetainAllowed: true, MaxPayloadBytes: 100}},
		StrictTopics:  true,
	}
	events := []nodelink.Event{
		{Revision: 7, Kind: nodelink.KindSnapshot, Snapshot: &nodelink.Snapshot{Revision: 7, NodeID: "n-1", Instances: []nodelink.Instance{in}}},
		{Revision: 8, Kind: nodelink.KindInstancePut, InstanceID: "i-1", Instance: &in},
		{Revision: 9, Kind: nodelink.KindCredentialPut, InstanceID: "i-1", Credential: &in.Credentials[0]},
		{Revision: 10, Kind: nodelink.KindACLReplace, InstanceID: "i-1", ACL: in.ACL},
		{Revision: 11, Kind: nodelink.KindACLPut, InstanceID: "i-1", ACLRule: &in.ACL[0]},
		{Revision: 12, Kind: nodelink.KindQuotasPut, InstanceID: "i-1", Quotas: &in.Quotas},
		{Revision: 13, Kind: nodelink.KindTokenKeyPut, InstanceID: "i-1", TokenKey: &in.TokenKeys[0]},
		{Revision: 14, Kind: nodelink.KindTokenRevoke, InstanceID: "i-1", RevokedToken: &in.RevokedTokens[0]},
		{Revision: 15, Kind: nodelink.KindTopicPut, InstanceID: "i-1", Topic: &in.Topics[0]},
		{Revision: 16, Kind: nodelink.KindStrictTopics, InstanceID: "i-1", Strict: &strict},
		{Revision: 17, Kind: nodelink.KindCredentialDel, InstanceID: "i-1", ID: "c-2"},
		{Revision: 18, Kind: nodelink.KindHeartbeat},
	}
	for _, ev := range events {
		b, err := nodelink.EncodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := nodelink.DecodeEvent(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, ev) {
			t.Errorf("%s changed on the wire:\n got %+v\nwant %+v\n(%s)", ev.Kind, got, ev, b)
		}
	}
	if _, err := nodelink.DecodeEvent([]byte(`{"rev":1,"kind":`)); err == nil {
		t.Error("a torn event decoded")
	}
}
