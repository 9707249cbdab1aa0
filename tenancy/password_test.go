package tenancy

import (
	"errors"
	"strings"
	"testing"
)

func TestPasswordHashRoundTrip(t *testing.T) {
	p := PasswordParams{Memory: 1024, Iterations: 1, Parallelism: 1}
	h, err := HashPassword("correct horse battery", p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=1024,t=1,p=1$") {
		t.Fatalf("hash %q is not an argon2id PHC string", h)
	}
	cases := []struct {
		name, hash, pw string
		want           bool
		wantErr        bool
	}{
		{"right password", h, "correct horse battery", true, false},
		{"wrong password", h, "correct horse batterx", false, false},
		{"not argon2id", "$bcrypt$x", "x", false, true},
		{"garbled params", "$argon2id$v=19$m=x$aa$bb", "x", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ok, err := VerifyPassword(c.hash, c.pw)
			if (err != nil) != c.wantErr || ok != c.want {
				t.Fatalf("VerifyPassword = %v, %v", ok, err)
			}
		})
	}
}

func TestNormalizeEmail(t *testing.T) {
	cases := []struct{ in, want string }{
		{"  Alice@Example.COM ", "alice@example.com"},
		{"bob@example.org", "bob@example.org"},
		{"no-at-sign", ""},
		{"@example.com", ""},
		{"a@nodot", ""},
		{"a b@example.com", ""},
	}
	for _, c := range cases {
		got, err := NormalizeEmail(c.in)
		if c.want == "" {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Errorf("NormalizeEmail(%q) = %q, %v; want a validation error", c.in, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestNewIDIsTimeOrderedAndUnique(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	for range 1000 {
		id := NewID("k")
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
		if prev != "" && id[:11] < prev[:11] { // "k-" + 9 chars = 45 bits of pure time
			t.Fatalf("time part went backwards: %s after %s", id, prev)
		}
		prev = id
	}
}
