package tenancy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"path"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/aeriemq/aerie/nodelink"
)

// Credential is a device credential (never its password).
type Credential struct {
	ID              string
	InstanceID      string
	Username        string
	ClientIDPattern string
	Enabled         bool
	ExpiresAt       *time.Time
	CreatedAt       time.Time
	UpdatedAt       time.Time
	// PasswordSupplied: the password was supplied by the caller (bcrypt)
	// rather than generated (SHA-256).
	PasswordSupplied bool
}

// NewCredential is one credential to create.
type NewCredential struct {
	Username        string
	ClientIDPattern string
	ExpiresAt       *time.Time
	// Password, when set, is the caller's own password (e.g. from a vault),
	// stored as a bcrypt hash; empty means a generated one.
	Password string
}

// DeviceBcryptCost is the bcrypt cost of tenant-supplied device passwords:
// 50–120 ms of one core per check (BenchmarkSuppliedPasswordCheck in
// dataplane/configsync), paid by the node on the first CONNECT with such a
// credential after the node starts or the password changes (and on every
// wrong password); later connects hit the node's in-memory cache (~2 µs).
// Generated passwords (160 random bits) keep a plain SHA-256 (<1 µs).
const DeviceBcryptCost = 10

// Supplied device passwords: bcrypt reads at most 72 bytes.
const (
	MinDevicePasswordLength = 12
	MaxDevicePasswordLength = 72
)

// HashDevicePassword returns the bcrypt hash of a tenant-supplied device
// password.
func HashDevicePassword(pw string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), DeviceBcryptCost)
	if err != nil {
		return "", fmt.Errorf("hash device password: %w", err)
	}
	return string(h), nil
}

// hashDevicePasswords hashes the supplied passwords of in on every core
// (bcrypt is slow by design); nil entries are generated passwords.
func hashDevicePasswords(in []NewCredential) ([]*string, error) {
	phcs := make([]*string, len(in))
	errs := make([]error, len(in))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, c := range in {
		if c.Password == "" {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			h, err := HashDevicePassword(c.Password)
			phcs[i], errs[i] = &h, err
		}()
	}
	wg.Wait()
	return phcs, errors.Join(errs...)
}

func checkDevicePassword(field, pw string) []FieldError {
	if len(pw) < MinDevicePasswordLength || len(pw) > MaxDevicePasswordLength {
		return []FieldError{{Field: field, Message: fmt.Sprintf("must be %d to %d bytes", MinDevicePasswordLength, MaxDevicePasswordLength)}}
	}
	return nil
}

// credSecret is how a credential's password is checked: hash (SHA-256 of a
// generated secret) or phc (bcrypt of a supplied one).
type credSecret struct {
	hash []byte
	phc  *string
}

// MaxBulkCredentials bounds one bulk create.
const MaxBulkCredentials = 1000

// newDevicePassword returns a random password of 160 bits (32 base32
// characters) and its SHA-256.
func newDevicePassword() (string, []byte) {
	pw := randomToken(20)
	h := sha256.Sum256([]byte(pw))
	return pw, h[:]
}

func validUsername(u string) bool {
	if u == "" || len(u) > 128 || u == DeviceTokenUsername {
		return false
	}
	for _, r := range u {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '-' || r == '_' || r == '.' || r == ':':
		default:
			return false
		}
	}
	return true
}

func (s *Service) checkCredential(prefix string, c NewCredential) []FieldError {
	var f []FieldError
	if !validUsername(c.Username) {
		f = append(f, FieldError{Field: prefix + "username", Message: `must be 1 to 128 of a-z A-Z 0-9 - _ . : and not "token"`})
	}
	if c.ClientIDPattern != "" {
		if len(c.ClientIDPattern) > 256 {
			f = append(f, FieldError{Field: prefix + "client_id_pattern", Message: "must be at most 256 characters"})
		} else if _, err := path.Match(c.ClientIDPattern, ""); err != nil {
			f = append(f, FieldError{Field: prefix + "client_id_pattern", Message: "is not a valid glob pattern"})
		}
	}
	if c.ExpiresAt != nil && !c.ExpiresAt.After(s.now()) {
		f = append(f, FieldError{Field: prefix + "expires_at", Message: "must be in the future"})
	}
	if c.Password != "" {
		f = append(f, checkDevicePassword(prefix+"password", c.Password)...)
	}
	return f
}

// lockInstance locks the org's instance for a child change and returns its
// node (ErrNotFound for another org's instance).
// lockCredential locks the instance (as lockInstance) and then the
// credential, returning the instance's node and the credential.
func (s *Service) lockCredential(ctx context.Context, tx pgx.Tx, orgID, instanceID, id string) (string, Credential, error) {
	node, err := s.lockInstance(ctx, tx, orgID, instanceID)
	if err != nil {
		return "", Credential{}, err
	}
	c, err := s.credential(ctx, tx, orgID, instanceID, id, true)
	if err != nil {
		return "", Credential{}, err
	}
	return node, c, nil
}

func (s *Service) lockInstance(ctx context.Context, tx pgx.Tx, orgID, instanceID string) (string, error) {
	var node string
	err := tx.QueryRow(ctx, `SELECT node_id FROM instances WHERE org_id = $1 AND id = $2 FOR NO KEY UPDATE`, orgID, instanceID).Scan(&node)
	if err != nil {
		return "", fmt.Errorf("instance %s: %w", instanceID, notFound(err))
	}
	return node, nil
}

func credEvent(c Credential, sec credSecret) nodelink.Event {
	cc := &nodelink.Credential{ID: c.ID, Username: c.Username, SecretSHA256: sec.hash, ClientIDPattern: c.ClientIDPattern, Enabled: c.Enabled, ExpiresAt: c.ExpiresAt}
	if sec.phc != nil {
		cc.SecretSHA256, cc.PasswordHash = nil, *sec.phc
	}
	return nodelink.Event{Kind: nodelink.KindCredentialPut, InstanceID: c.InstanceID, Credential: cc}
}

// CreateCredentials creates up to MaxBulkCredentials credentials in one
// transaction (all or none) and returns them with their generated
// passwords, in the same order (empty for a supplied password, which is
// never echoed). Passwords are shown once.
func (s *Service) CreateCredentials(ctx context.Context, a Actor, orgID, instanceID string, in []NewCredential) ([]Credential, []string, error) {
	if len(in) == 0 || len(in) > MaxBulkCredentials {
		return nil, nil, invalid("credentials", fmt.Sprintf("must hold 1 to %d credentials", MaxBulkCredentials))
	}
	var fields []FieldError
	seen := map[string]bool{}
	for i, c := range in {
		prefix := ""
		if len(in) > 1 {
			prefix = "credentials[" + strconv.Itoa(i) + "]."
		}
		fields = append(fields, s.checkCredential(prefix, c)...)
		if seen[c.Username] {
			fields = append(fields, FieldError{Field: prefix + "username", Message: "appears twice"})
		}
		seen[c.Username] = true
	}
	if len(fields) > 0 {
		return nil, nil, &ValidationError{Fields: fields}
	}
	phcs, err := hashDevicePasswords(in)
	if err != nil {
		return nil, nil, err
	}
	out := make([]Credential, len(in))
	pws := make([]string, len(in))
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		node, err := s.lockInstance(ctx, tx, orgID, instanceID)
		if err != nil {
			return err
		}
		if err := s.checkOrgLimit(ctx, tx, orgID, limitCredentials, instanceID, len(in)); err != nil {
			return err
		}
		now := s.nowUTC()
		for i, c := range in {
			var pw string
			var sec credSecret
			if phcs[i] != nil {
				sec.phc = phcs[i]
			} else {
				pw, sec.hash = newDevicePassword()
			}
			cr := Credential{ID: NewID("c"), InstanceID: instanceID, Username: c.Username, ClientIDPattern: c.ClientIDPattern,
				Enabled: true, ExpiresAt: truncUTC(c.ExpiresAt), CreatedAt: now, UpdatedAt: now, PasswordSupplied: sec.phc != nil}
			_, err := tx.Exec(ctx, `INSERT INTO device_credentials (id, instance_id, username, secret_sha256, password_hash, client_id_pattern, enabled, expires_at, created_at, updated_at)
				VALUES ($1,$2,$3,$4,$5,$6,true,$7,$8,$8)`, cr.ID, instanceID, cr.Username, sec.hash, sec.phc, cr.ClientIDPattern, cr.ExpiresAt, now)
			if isUniqueViolation(err) {
				field := "username"
				if len(in) > 1 {
					field = "credentials[" + strconv.Itoa(i) + "].username"
				}
				return taken(field, "is already used in this instance")
			}
			if err != nil {
				return fmt.Errorf("insert credential: %w", err)
			}
			if _, err := emit(ctx, tx, node, instanceID, credEvent(cr, sec)); err != nil {
				return err
			}
			out[i], pws[i] = cr, pw
		}
		target := out[0].ID
		if len(out) > 1 {
			target = instanceID + " (" + strconv.Itoa(len(out)) + " credentials)"
		}
		return s.audit(ctx, tx, a, orgID, "credential.create", target)
	})
	if err != nil {
		return nil, nil, err
	}
	return out, pws, nil
}

const credCols = `c.id, c.instance_id, c.username, c.client_id_pattern, c.enabled, c.expires_at, c.created_at, c.updated_at, c.password_hash IS NOT NULL`

func scanCredential(r pgx.CollectableRow) (Credential, error) {
	var c Credential
	err := r.Scan(&c.ID, &c.InstanceID, &c.Username, &c.ClientIDPattern, &c.Enabled, &c.ExpiresAt, &c.CreatedAt, &c.UpdatedAt, &c.PasswordSupplied)
	return c, err
}

// ListCredentials lists an instance's credentials by ID.
func (s *Service) ListCredentials(ctx context.Context, orgID, instanceID string, p Page) ([]Credential, string, error) {
	if _, err := s.Instance(ctx, orgID, instanceID); err != nil {
		return nil, "", err
	}
	rows, err := s.db.Query(ctx, `SELECT `+credCols+` FROM device_credentials c JOIN instances i ON i.id = c.instance_id
		WHERE i.org_id = $1 AND c.instance_id = $2 AND c.id > $3 AND ($5 = '' OR c.username = $5) ORDER BY c.id LIMIT $4`, orgID, instanceID, p.After, p.limit()+1, p.Name)
	if err != nil {
		return nil, "", fmt.Errorf("list credentials: %w", err)
	}
	list, err := pgx.CollectRows(rows, scanCredential)
	if err != nil {
		return nil, "", fmt.Errorf("list credentials: %w", err)
	}
	list, next := trimPage(list, p.limit(), func(c Credential) string { return c.ID })
	return list, next, nil
}

// Credential returns one credential of the org's instance.
func (s *Service) Credential(ctx context.Context, orgID, instanceID, id string) (Credential, error) {
	return s.credential(ctx, s.db, orgID, instanceID, id, false)
}

func (s *Service) credential(ctx context.Context, q querier, orgID, instanceID, id string, lock bool) (Credential, error) {
	sql := `SELECT ` + credCols + ` FROM device_credentials c JOIN instances i ON i.id = c.instance_id
		WHERE i.org_id = $1 AND c.instance_id = $2 AND c.id = $3`
	if lock {
		sql += ` FOR UPDATE OF c`
	}
	rows, err := q.Query(ctx, sql, orgID, instanceID, id)
	if err != nil {
		return Credential{}, fmt.Errorf("get credential: %w", err)
	}
	c, err := pgx.CollectExactlyOneRow(rows, scanCredential)
	if err != nil {
		return Credential{}, fmt.Errorf("credential %s: %w", id, notFound(err))
	}
	return c, nil
}

// SetCredentialEnabled enables or disables a credential; disabling closes
// the device's live connections.
func (s *Service) SetCredentialEnabled(ctx context.Context, a Actor, orgID, instanceID, id string, enabled bool) (Credential, error) {
	var out Credential
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		node, c, err := s.lockCredential(ctx, tx, orgID, instanceID, id)
		if err != nil {
			return err
		}
		if c.Enabled == enabled {
			out = c
			return nil
		}
		c.Enabled, c.UpdatedAt = enabled, s.nowUTC()
		var sec credSecret
		if err := tx.QueryRow(ctx, `UPDATE device_credentials SET enabled = $2, updated_at = $3 WHERE id = $1 RETURNING secret_sha256, password_hash`,
			id, enabled, c.UpdatedAt).Scan(&sec.hash, &sec.phc); err != nil {
			return fmt.Errorf("update credential: %w", err)
		}
		if _, err := emit(ctx, tx, node, instanceID, credEvent(c, sec)); err != nil {
			return err
		}
		out = c
		action := "credential.disable"
		if enabled {
			action = "credential.enable"
		}
		return s.audit(ctx, tx, a, orgID, action, id)
	})
	return out, err
}

// RotateCredential gives the credential a new generated password (shown
// once); the old one stops working and its live connections are closed.
func (s *Service) RotateCredential(ctx context.Context, a Actor, orgID, instanceID, id string) (Credential, string, error) {
	return s.rotateCredential(ctx, a, orgID, instanceID, id, "")
}

// SetCredentialPassword replaces the credential's password with one the
// caller supplies (stored as bcrypt, never echoed); live connections are
// closed.
func (s *Service) SetCredentialPassword(ctx context.Context, a Actor, orgID, instanceID, id, password string) (Credential, error) {
	if f := checkDevicePassword("password", password); f != nil {
		return Credential{}, &ValidationError{Fields: f}
	}
	c, _, err := s.rotateCredential(ctx, a, orgID, instanceID, id, password)
	return c, err
}

func (s *Service) rotateCredential(ctx context.Context, a Actor, orgID, instanceID, id, supplied string) (Credential, string, error) {
	var out Credential
	var pw string
	var sec credSecret
	if supplied != "" {
		h, err := HashDevicePassword(supplied)
		if err != nil {
			return Credential{}, "", err
		}
		sec.phc = &h
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		node, c, err := s.lockCredential(ctx, tx, orgID, instanceID, id)
		if err != nil {
			return err
		}
		if sec.phc == nil {
			pw, sec.hash = newDevicePassword()
		}
		c.UpdatedAt, c.PasswordSupplied = s.nowUTC(), sec.phc != nil
		if _, err := tx.Exec(ctx, `UPDATE device_credentials SET secret_sha256 = $2, password_hash = $3, updated_at = $4 WHERE id = $1`,
			id, sec.hash, sec.phc, c.UpdatedAt); err != nil {
			return fmt.Errorf("rotate credential: %w", err)
		}
		if _, err := emit(ctx, tx, node, instanceID, credEvent(c, sec)); err != nil {
			return err
		}
		out = c
		return s.audit(ctx, tx, a, orgID, "credential.rotate", id)
	})
	return out, pw, err
}

// DeleteCredential deletes a credential (and its ACL rules); the device's
// live connections are closed.
func (s *Service) DeleteCredential(ctx context.Context, a Actor, orgID, instanceID, id string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		node, err := s.lockInstance(ctx, tx, orgID, instanceID)
		if err != nil {
			return err
		}
		if _, err := s.credential(ctx, tx, orgID, instanceID, id, true); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `DELETE FROM acl_rules WHERE credential_id = $1 RETURNING id`, id)
		if err != nil {
			return fmt.Errorf("delete credential rules: %w", err)
		}
		ruleIDs, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("delete credential rules: %w", err)
		}
		for _, rid := range ruleIDs {
			if _, err := emit(ctx, tx, node, instanceID, nodelink.Event{Kind: nodelink.KindACLDelete, InstanceID: instanceID, ID: rid}); err != nil {
				return err
			}
		}
		if len(ruleIDs) > 0 {
			order, err := ruleOrder(ctx, tx, instanceID)
			if err != nil {
				return err
			}
			if err := writeOrder(ctx, tx, instanceID, order); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM device_credentials WHERE id = $1`, id); err != nil {
			return fmt.Errorf("delete credential: %w", err)
		}
		if _, err := emit(ctx, tx, node, instanceID, nodelink.Event{Kind: nodelink.KindCredentialDel, InstanceID: instanceID, ID: id}); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, orgID, "credential.delete", id)
	})
}
