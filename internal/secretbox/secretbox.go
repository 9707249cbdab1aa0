// Package secretbox seals secrets at rest (private keys, webhook secrets)
// with a key-encryption key (KEK): AES-256-GCM, each sealed value naming the
// KEK that sealed it, so KEKs can be rotated: the first key of a Keyring
// seals, every key opens.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// magic starts every sealed value: "aek1" then an 8-byte KEK id, a 12-byte
// nonce and the ciphertext with its tag.
var magic = []byte("aek1")

const idLen, nonceLen = 8, 12

// ErrNoKey: a sealed value names a KEK the keyring does not hold.
var ErrNoKey = errors.New("secretbox: sealed with a key that is not in the keyring")

type kek struct {
	id   [idLen]byte
	aead cipher.AEAD
}

// Keyring holds the current KEK (first) and older ones still accepted for
// opening.
type Keyring struct{ keys []kek }

// Parse reads a keyring from text: one base64 (standard or URL, padded or
// not) 32-byte key per line, the current one first; blank lines and lines
// starting with # are skipped.
func Parse(text string) (*Keyring, error) {
	kr := &Keyring{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var raw []byte
		var err error
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if raw, err = enc.DecodeString(line); err == nil {
				break
			}
		}
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("secretbox: line %d is not a base64 32-byte key", i+1)
		}
		k, err := newKEK(raw)
		if err != nil {
			return nil, err
		}
		kr.keys = append(kr.keys, k)
	}
	if len(kr.keys) == 0 {
		return nil, errors.New("secretbox: no key")
	}
	return kr, nil
}

// NewKey returns a fresh key as a keyring line.
func NewKey() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func newKEK(raw []byte) (kek, error) {
	block, err := aes.NewCipher(raw)
	if err != nil {
		return kek{}, fmt.Errorf("secretbox: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return kek{}, fmt.Errorf("secretbox: %w", err)
	}
	sum := sha256.Sum256(append([]byte("aerie-kek-id:"), raw...))
	k := kek{aead: aead}
	copy(k.id[:], sum[:idLen])
	return k, nil
}

// Sealed reports whether b is a sealed value (rather than a plaintext one
// written before secrets were sealed).
func Sealed(b []byte) bool {
	return len(b) > len(magic)+idLen+nonceLen && string(b[:len(magic)]) == string(magic)
}

// Current reports whether b is sealed with the keyring's current KEK.
func (kr *Keyring) Current(b []byte) bool {
	return Sealed(b) && string(b[len(magic):len(magic)+idLen]) == string(kr.keys[0].id[:])
}

// Seal encrypts plain with the current KEK; aad binds it to its place (for
// example the row's key), so a sealed value cannot be moved to another row.
func (kr *Keyring) Seal(plain, aad []byte) []byte {
	k := kr.keys[0]
	out := make([]byte, 0, len(magic)+idLen+nonceLen+len(plain)+k.aead.Overhead())
	out = append(out, magic...)
	out = append(out, k.id[:]...)
	nonce := make([]byte, nonceLen)
	if _, err := rand.Read(nonce); err != nil {
		panic(err)
	}
	out = append(out, nonce...)
	return k.aead.Seal(out, nonce, plain, aad)
}

// Open decrypts a sealed value with whichever KEK sealed it.
func (kr *Keyring) Open(sealed, aad []byte) ([]byte, error) {
	if !Sealed(sealed) {
		return nil, errors.New("secretbox: not a sealed value")
	}
	id := sealed[len(magic) : len(magic)+idLen]
	nonce := sealed[len(magic)+idLen : len(magic)+idLen+nonceLen]
	for _, k := range kr.keys {
		if string(k.id[:]) == string(id) {
			plain, err := k.aead.Open(nil, nonce, sealed[len(magic)+idLen+nonceLen:], aad)
			if err != nil {
				return nil, fmt.Errorf("secretbox: %w", err)
			}
			return plain, nil
		}
	}
	return nil, ErrNoKey
}
