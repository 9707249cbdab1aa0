package config

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
)

// Rule event kinds.
const (
	KindRulePut    = "rule.put"    // InstanceID, Rule
	KindRuleDelete = "rule.delete" // InstanceID, ID
)

// Sink types.
const (
	SinkWebhook = "webhook"
)

// Webhook modes (CloudEvents 1.0 HTTP binding).
const (
	ModeStructured = "structured" // the whole event as application/cloudevents+json
	ModeBinary     = "binary"     // ce-* headers, the payload as the body
)

// Rule is a forwarding rule: the instance's messages matching Filter go to
// Sink, at least once and in order per topic, driven from the node's store
// (the rule's queue and a cursor, like a consumer group). A message whose
// delivery still fails once it is older than MaxAgeSeconds goes to the
// rule's dead-letter list on the node.
type Rule struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	Filter        string `json:"filter"`
	Paused        bool   `json:"paused,omitempty"`
	MaxAgeSeconds int64  `json:"max_age_seconds"`
	Sink          Sink   `json:"sink"`
}

// Sink is where a rule sends messages. Type names the implementation
// (webhook; Kafka, NATS and AMQP may follow); the other fields are the
// webhook's.
type Sink struct {
	Type          string            `json:"type"`
	URL           string            `json:"url,omitempty"`
	Mode          string            `json:"mode,omitempty"` // ModeStructured (default) or ModeBinary
	Headers       map[string]string `json:"headers,omitempty"`
	TimeoutMillis int64             `json:"timeout_ms,omitempty"`
	// SealedSecret is the rule's signing secret sealed for the node it is
	// placed on (SealForNode): neither the outbox nor the node's disk cache
	// holds it in plain.
	SealedSecret []byte `json:"sealed_secret,omitempty"`
}

// nodeKey derives the key that seals rule secrets for one node from the
// SHA-256 of its token's secret part (what the control plane stores).
func nodeKey(tokenSHA256 []byte) []byte {
	m := hmac.New(sha256.New, tokenSHA256)
	m.Write([]byte("aerie rule secrets v1"))
	return m.Sum(nil)
}

// NodeTokenSHA256 is the SHA-256 of a node token's secret part
// (aen_<node>_<secret>), as the control plane stores it.
func NodeTokenSHA256(token string) []byte {
	if i := strings.LastIndexByte(token, '_'); i >= 0 {
		token = token[i+1:]
	}
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

func ruleAEAD(tokenSHA256 []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(nodeKey(tokenSHA256))
	if err != nil {
		return nil, fmt.Errorf("rule secret key: %w", err)
	}
	return cipher.NewGCM(block)
}

// SealForNode seals a rule's secret for the node whose token hash is
// tokenSHA256 (AES-256-GCM, bound to the rule ID).
func SealForNode(tokenSHA256 []byte, ruleID string, plain []byte) ([]byte, error) {
	aead, err := ruleAEAD(tokenSHA256)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("rule secret nonce: %w", err)
	}
	return aead.Seal(nonce, nonce, plain, []byte("rule:"+ruleID)), nil
}

// ErrSealedSecret: a rule's sealed secret does not open with this node's
// token (sealed for another node, or tampered with).
var ErrSealedSecret = errors.New("rule secret does not open with this node's token")

// OpenForNode reverses SealForNode on the node.
func OpenForNode(tokenSHA256 []byte, ruleID string, sealed []byte) ([]byte, error) {
	aead, err := ruleAEAD(tokenSHA256)
	if err != nil {
		return nil, err
	}
	n := aead.NonceSize()
	if len(sealed) < n {
		return nil, ErrSealedSecret
	}
	plain, err := aead.Open(nil, sealed[:n], sealed[n:], []byte("rule:"+ruleID))
	if err != nil {
		return nil, ErrSealedSecret
	}
	return plain, nil
}
