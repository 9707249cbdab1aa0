package tenancy

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aeriemq/aerie/internal/mailer"
)

// User is an account.
type User struct {
	ID            string
	Email         string
	EmailVerified bool
	CreatedAt     time.Time
}

// SignupInput is what sign-up takes.
type SignupInput struct {
	Email    string
	Password string
	OrgName  string
}

func checkOrgName(name string) (string, error) {
	n := strings.TrimSpace(name)
	if n == "" || len([]rune(n)) > 100 {
		return "", invalid("org_name", "must be 1 to 100 characters")
	}
	return n, nil
}

// Signup creates a user and an org the user owns, and mails an email
// verification link. A taken email is ErrConflict.
func (s *Service) Signup(ctx context.Context, in SignupInput, a Actor) (User, Org, error) {
	var fields []FieldError
	email, err := NormalizeEmail(in.Email)
	collect(&fields, err)
	collect(&fields, checkPassword("password", in.Password))
	orgName, err := checkOrgName(in.OrgName)
	if err != nil {
		collect(&fields, invalid("org_name", "must be 1 to 100 characters"))
	}
	if len(fields) > 0 {
		return User{}, Org{}, &ValidationError{Fields: fields}
	}
	hash, err := HashPassword(in.Password, s.pw)
	if err != nil {
		return User{}, Org{}, err
	}
	now := s.nowUTC()
	u := User{ID: NewID("u"), Email: email, CreatedAt: now}
	o := Org{ID: NewID("o"), Name: orgName, CreatedAt: now, Role: RoleOwner}
	var verifyToken string
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO users (id, email, password_hash, created_at) VALUES ($1,$2,$3,$4)`, u.ID, email, hash, now); err != nil {
			if isUniqueViolation(err) {
				return fmt.Errorf("%w: email already registered", ErrConflict)
			}
			return fmt.Errorf("insert user: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO orgs (id, name, created_at) VALUES ($1,$2,$3)`, o.ID, o.Name, now); err != nil {
			return fmt.Errorf("insert org: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO org_members (org_id, user_id, role, created_at) VALUES ($1,$2,'owner',$3)`, o.ID, u.ID, now); err != nil {
			return fmt.Errorf("insert owner: %w", err)
		}
		verifyToken, err = s.newUserToken(ctx, tx, u.ID, "verify_email", 48*time.Hour)
		if err != nil {
			return err
		}
		a.UserID = u.ID
		return s.audit(ctx, tx, a, o.ID, "org.create", o.ID)
	})
	if err != nil {
		return User{}, Org{}, err
	}
	s.send(ctx, mailer.Message{To: email, Subject: "Verify your Aerie email address",
		Body: "Confirm your address: " + s.baseURL + "/verify-email?token=" + url.QueryEscape(verifyToken) + "\n"})
	return u, o, nil
}

func collect(fields *[]FieldError, err error) {
	var ve *ValidationError
	if errors.As(err, &ve) {
		*fields = append(*fields, ve.Fields...)
	}
}

// send mails m, logging (never failing the caller) when delivery fails.
func (s *Service) send(ctx context.Context, m mailer.Message) {
	if err := s.mail.Send(ctx, m); err != nil {
		s.log.WarnContext(ctx, "sending email failed", "to", m.To, "subject", m.Subject, "error", err)
	}
}

// dummyHash is verified against when an email is unknown, so that login
// takes as long for unknown emails as for wrong passwords.
func (s *Service) dummyHash() string {
	s.dummyOnce.Do(func() { s.dummy, _ = HashPassword("not-a-real-password", s.pw) })
	return s.dummy
}

// CheckPassword returns the user with this email and password, or
// ErrUnauthenticated.
func (s *Service) CheckPassword(ctx context.Context, email, password string) (User, error) {
	e, err := NormalizeEmail(email)
	if err != nil {
		return User{}, ErrUnauthenticated
	}
	var u User
	var hash string
	var verified *time.Time
	err = s.db.QueryRow(ctx, `SELECT id, email, password_hash, email_verified_at, created_at FROM users WHERE email = $1`, e).
		Scan(&u.ID, &u.Email, &hash, &verified, &u.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		_, _ = VerifyPassword(s.dummyHash(), password)
		return User{}, ErrUnauthenticated
	}
	if err != nil {
		return User{}, fmt.Errorf("look up user: %w", err)
	}
	ok, err := VerifyPassword(hash, password)
	if err != nil {
		return User{}, fmt.Errorf("verify password of %s: %w", u.ID, err)
	}
	if !ok {
		return User{}, ErrUnauthenticated
	}
	u.EmailVerified = verified != nil
	return u, nil
}

// User returns a user by ID.
func (s *Service) User(ctx context.Context, id string) (User, error) {
	var u User
	var verified *time.Time
	err := s.db.QueryRow(ctx, `SELECT id, email, email_verified_at, created_at FROM users WHERE id = $1`, id).
		Scan(&u.ID, &u.Email, &verified, &u.CreatedAt)
	if err != nil {
		return User{}, notFound(err)
	}
	u.EmailVerified = verified != nil
	return u, nil
}

func (s *Service) newUserToken(ctx context.Context, q querier, userID, purpose string, ttl time.Duration) (string, error) {
	tok := randomToken(32)
	_, err := q.Exec(ctx, `INSERT INTO user_tokens (token_hash, user_id, purpose, created_at, expires_at) VALUES ($1,$2,$3,$4,$5)`,
		sha(tok), userID, purpose, s.now(), s.now().Add(ttl))
	if err != nil {
		return "", fmt.Errorf("store %s token: %w", purpose, err)
	}
	return tok, nil
}

// useUserToken consumes a one-use token and returns its user.
func (s *Service) useUserToken(ctx context.Context, q querier, token, purpose string) (string, error) {
	var userID string
	err := q.QueryRow(ctx, `UPDATE user_tokens SET used_at = $3
		WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3 RETURNING user_id`,
		sha(token), purpose, s.now()).Scan(&userID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("%w: token is invalid, used or expired", ErrUnauthenticated)
	}
	if err != nil {
		return "", fmt.Errorf("use %s token: %w", purpose, err)
	}
	return userID, nil
}

// VerifyEmail marks the token's user as verified.
func (s *Service) VerifyEmail(ctx context.Context, token string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		uid, err := s.useUserToken(ctx, tx, token, "verify_email")
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE users SET email_verified_at = coalesce(email_verified_at, $2) WHERE id = $1`, uid, s.now())
		return err
	})
}

// RequestPasswordReset mails a reset link when the email is registered,
// and does nothing (without telling) otherwise.
func (s *Service) RequestPasswordReset(ctx context.Context, email string) error {
	e, err := NormalizeEmail(email)
	if err != nil {
		return err
	}
	var uid string
	err = s.db.QueryRow(ctx, `SELECT id FROM users WHERE email = $1`, e).Scan(&uid)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up user: %w", err)
	}
	tok, err := s.newUserToken(ctx, s.db, uid, "reset_password", time.Hour)
	if err != nil {
		return err
	}
	s.send(ctx, mailer.Message{To: e, Subject: "Reset your Aerie password",
		Body: "Choose a new password at this link: " + s.baseURL + "/reset-password?token=" + url.QueryEscape(tok) + "\n"})
	return nil
}

// ResetPassword sets a new password with a mailed token and signs the user
// out everywhere (every refresh token is revoked).
func (s *Service) ResetPassword(ctx context.Context, token, password string) error {
	if err := checkPassword("password", password); err != nil {
		return err
	}
	hash, err := HashPassword(password, s.pw)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx pgx.Tx) error {
		uid, err := s.useUserToken(ctx, tx, token, "reset_password")
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE users SET password_hash = $2 WHERE id = $1`, uid, hash); err != nil {
			return fmt.Errorf("set password: %w", err)
		}
		_, err = tx.Exec(ctx, `UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL`, uid, s.now())
		return err
	})
}
