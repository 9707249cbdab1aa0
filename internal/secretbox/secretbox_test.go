package secretbox

import (
	"bytes"
	"errors"
	"testing"
)

// TestSealOpenRotate: a value sealed under the current key opens with any
// keyring holding that key, not with another AAD or without the key; a
// rotated keyring opens old values and seals under the new key.
func TestSealOpenRotate(t *testing.T) {
	oldKey, newKey := NewKey(), NewKey()
	old, err := Parse(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte("ed25519 seed: 32 bytes of secret")
	sealed := old.Seal(plain, []byte("row-1"))
	if !Sealed(sealed) || bytes.Contains(sealed, plain) || !old.Current(sealed) {
		t.Fatalf("sealed value %x", sealed)
	}
	if got, err := old.Open(sealed, []byte("row-1")); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := old.Open(sealed, []byte("row-2")); err == nil {
		t.Fatal("opened with another row's AAD")
	}
	rotated, err := Parse("# current first\n" + newKey + "\n\n" + oldKey + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if rotated.Current(sealed) {
		t.Fatal("old value counted as sealed under the new key")
	}
	if got, err := rotated.Open(sealed, []byte("row-1")); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("rotated keyring cannot open an old value: %v", err)
	}
	resealed := rotated.Seal(plain, []byte("row-1"))
	onlyNew, _ := Parse(newKey)
	if !onlyNew.Current(resealed) {
		t.Fatal("reseal not under the new key")
	}
	if _, err := onlyNew.Open(sealed, []byte("row-1")); !errors.Is(err, ErrNoKey) {
		t.Fatalf("retired key: %v, want ErrNoKey", err)
	}
	for _, bad := range []string{"", "not base64!", "c2hvcnQ="} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
