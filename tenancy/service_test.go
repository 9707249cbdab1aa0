package tenancy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/internal/mailer"
	"github.com/aeriemq/aerie/internal/pgtest"
	"github.com/aeriemq/aerie/tenancy"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// bundle is one service over a fresh database with two orgs.
type bundle struct {
	svc          *tenancy.Service
	db           *pgtest.DB
	out          *mailer.Outbox
	userA, userB tenancy.User
	orgA, orgB   tenancy.Org
}

func setup(t *testing.T) *bundle {
	t.Helper()
	db := pgtest.New(t)
	out := mailer.NewOutbox()
	svc := tenancy.NewService(db.Pool, slog.New(slog.NewTextHandler(io.Discard, nil)), tenancy.WithMailer(out), tenancy.WithPlans(billing.NewPlans(db.Pool)),
		tenancy.WithPasswordParams(tenancy.PasswordParams{Memory: 1024, Iterations: 1, Parallelism: 1}))
	ctx := context.Background()
	b := &bundle{svc: svc, db: db, out: out}
	var err error
	if b.userA, b.orgA, err = svc.Signup(ctx, tenancy.SignupInput{Email: "a@example.com", Password: "password-a-123", OrgName: "A"}, tenancy.Actor{}); err != nil {
		t.Fatal(err)
	}
	if b.userB, b.orgB, err = svc.Signup(ctx, tenancy.SignupInput{Email: "b@example.com", Password: "password-b-123", OrgName: "B"}, tenancy.Actor{}); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestService(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	actA := tenancy.Actor{UserID: b.userA.ID}

	t.Run("signup stores an argon2id hash and mails a verification link", func(t *testing.T) {
		if _, ok := b.out.Last("a@example.com"); !ok {
			t.Fatal("no verification mail")
		}
		if _, err := b.svc.CheckPassword(ctx, "A@EXAMPLE.COM", "password-a-123"); err != nil {
			t.Fatalf("normalised email login: %v", err)
		}
		if _, err := b.svc.CheckPassword(ctx, "a@example.com", "password-b-123"); !errors.Is(err, tenancy.ErrUnauthenticated) {
			t.Fatalf("wrong password: %v", err)
		}
		if _, err := b.svc.CheckPassword(ctx, "nobody@example.com", "password-a-123"); !errors.Is(err, tenancy.ErrUnauthenticated) {
			t.Fatalf("unknown email: %v", err)
		}
	})
	t.Run("signup validates every field at once", func(t *testing.T) {
		_, _, err := b.svc.Signup(ctx, tenancy.SignupInput{Email: "bad", Password: "short", OrgName: " "}, tenancy.Actor{})
		var ve *tenancy.ValidationError
		if !errors.As(err, &ve) || len(ve.Fields) != 3 {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("store queries are scoped by org", func(t *testing.T) {
		kb, _, err := b.svc.CreateAPIKey(ctx, tenancy.Actor{UserID: b.userB.ID}, b.orgB.ID, tenancy.NewAPIKey{Name: "kb", Scopes: []tenancy.Scope{"read"}, MaxScope: tenancy.ScopeAdmin})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.svc.APIKey(ctx, b.orgA.ID, kb.ID); !errors.Is(err, tenancy.ErrNotFound) {
			t.Fatalf("APIKey across orgs: %v", err)
		}
		if err := b.svc.RevokeAPIKey(ctx, actA, b.orgA.ID, kb.ID); !errors.Is(err, tenancy.ErrNotFound) {
			t.Fatalf("RevokeAPIKey across orgs: %v", err)
		}
		if _, err := b.svc.Member(ctx, b.orgA.ID, b.userB.ID); !errors.Is(err, tenancy.ErrNotFound) {
			t.Fatalf("Member across orgs: %v", err)
		}
		if err := b.svc.RemoveMember(ctx, actA, tenancy.RoleOwner, b.orgA.ID, b.userB.ID); !errors.Is(err, tenancy.ErrNotFound) {
			t.Fatalf("RemoveMember across orgs: %v", err)
		}
		if _, err := b.svc.MemberRole(ctx, b.orgB.ID, b.userA.ID); !errors.Is(err, tenancy.ErrNotFound) {
			t.Fatalf("MemberRole across orgs: %v", err)
		}
		keys, _, err := b.svc.ListAPIKeys(ctx, b.orgA.ID, tenancy.Page{})
		if err != nil || len(keys) != 0 {
			t.Fatalf("org A lists %d keys (%v)", len(keys), err)
		}
		evs, _, err := b.svc.ListAuditEvents(ctx, b.orgA.ID, tenancy.AuditFilter{}, tenancy.Page{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.OrgID != b.orgA.ID {
				t.Fatalf("org A sees event of %s", e.OrgID)
			}
		}
	})
	t.Run("api key scopes are capped by the creator's role", func(t *testing.T) {
		_, _, err := b.svc.CreateAPIKey(ctx, actA, b.orgA.ID, tenancy.NewAPIKey{Name: "x", Scopes: []tenancy.Scope{"write"}, MaxScope: tenancy.ScopeRead})
		if !errors.Is(err, tenancy.ErrForbidden) {
			t.Fatalf("err = %v", err)
		}
		_, tok, err := b.svc.CreateAPIKey(ctx, actA, b.orgA.ID, tenancy.NewAPIKey{Name: "x", Scopes: []tenancy.Scope{"admin", "read"}, MaxScope: tenancy.ScopeAdmin})
		if err != nil {
			t.Fatal(err)
		}
		ka, err := b.svc.AuthenticateAPIKey(ctx, tok)
		if err != nil || ka.EffectiveScope() != tenancy.ScopeAdmin {
			t.Fatalf("auth = %+v, %v", ka, err)
		}
		ka.CreatorRole = tenancy.RoleViewer
		if ka.EffectiveScope() != tenancy.ScopeRead {
			t.Fatalf("viewer creator: effective scope %s", ka.EffectiveScope())
		}
	})
	t.Run("refresh token reuse revokes the family", func(t *testing.T) {
		s1, err := b.svc.Login(ctx, "b@example.com", "password-b-123")
		if err != nil {
			t.Fatal(err)
		}
		s2, err := b.svc.Refresh(ctx, s1.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.svc.Refresh(ctx, s1.RefreshToken); !errors.Is(err, tenancy.ErrUnauthenticated) {
			t.Fatalf("reuse: %v", err)
		}
		if _, err := b.svc.Refresh(ctx, s2.RefreshToken); !errors.Is(err, tenancy.ErrUnauthenticated) {
			t.Fatalf("family member after reuse: %v", err)
		}
	})
	t.Run("expired refresh token is refused", func(t *testing.T) {
		s, err := b.svc.Login(ctx, "b@example.com", "password-b-123")
		if err != nil {
			t.Fatal(err)
		}
		later := tenancy.NewService(b.db.Pool, nil, tenancy.WithPlans(billing.NewPlans(b.db.Pool)), tenancy.WithClock(func() time.Time { return time.Now().Add(31 * 24 * time.Hour) }))
		if _, err := later.Refresh(ctx, s.RefreshToken); !errors.Is(err, tenancy.ErrUnauthenticated) {
			t.Fatalf("refresh after 31 days: %v", err)
		}
		if _, err := b.svc.Refresh(ctx, s.RefreshToken); err != nil {
			t.Fatalf("refresh now: %v", err)
		}
	})
}

func TestOptimisticUpdates(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	act := tenancy.Actor{UserID: b.userA.ID}
	old := "A"
	if _, err := b.svc.RenameOrg(ctx, act, b.orgA.ID, "A2", &old); err != nil {
		t.Fatalf("rename from the expected name: %v", err)
	}
	if _, err := b.svc.RenameOrg(ctx, act, b.orgA.ID, "A3", &old); !errors.Is(err, tenancy.ErrStale) {
		t.Fatalf("rename from a stale name: %v", err)
	}
	if _, err := b.svc.RenameOrg(ctx, act, b.orgB.ID, "B2", nil); err != nil {
		t.Fatalf("unconditional rename: %v", err)
	}
	if _, err := b.svc.ChangeRole(ctx, act, tenancy.RoleOwner, b.orgA.ID, b.userA.ID, tenancy.RoleOwner, tenancy.RoleViewer); !errors.Is(err, tenancy.ErrStale) {
		t.Fatalf("role change from a stale role: %v", err)
	}
	o, err := b.svc.Org(ctx, b.orgA.ID)
	if err != nil || o.Name != "A2" {
		t.Fatalf("org = %+v, %v", o, err)
	}
}

func TestSigningKeyRotation(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	tok, err := b.svc.IssueAccessToken(ctx, b.userA.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Rotate twice in quick succession: the first key signed tokens minutes
	// ago, so it must still verify.
	for range 2 {
		if _, err := b.svc.RotateSigningKey(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if uid, err := b.svc.VerifyAccessToken(ctx, tok); err != nil || uid != b.userA.ID {
		t.Fatalf("token of a just-retired key: %q, %v", uid, err)
	}
	// A rotation long after the retirement drops the old key.
	later := tenancy.NewService(b.db.Pool, nil, tenancy.WithPlans(billing.NewPlans(b.db.Pool)), tenancy.WithClock(func() time.Time { return time.Now().Add(time.Hour) }))
	if _, err := later.RotateSigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	fresh := tenancy.NewService(b.db.Pool, nil, tenancy.WithPlans(billing.NewPlans(b.db.Pool)))
	if _, err := fresh.VerifyAccessToken(ctx, tok); !errors.Is(err, tenancy.ErrUnauthenticated) {
		t.Fatalf("token of a dropped key: %v", err)
	}
	tok2, err := fresh.IssueAccessToken(ctx, b.userB.ID)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // unknown kids reload the keys at most once a second
	if uid, err := b.svc.VerifyAccessToken(ctx, tok2); err != nil || uid != b.userB.ID {
		t.Fatalf("another process's new key is not picked up: %q, %v", uid, err)
	}
}
