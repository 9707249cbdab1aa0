package tenancy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"

	"github.com/aeriemq/aerie/nodelink"
)

// Instance statuses.
const (
	InstanceProvisioning = "provisioning"
	InstanceRunning      = "running"
	InstanceSuspended    = "suspended"
	InstanceDeleting     = "deleting"
	// InstanceUnavailable is shown (never stored) for a provisioning or
	// running instance of which no node of its cell has reported within
	// the liveness window: devices cannot reach it until a node is back.
	InstanceUnavailable = "unavailable"
)

// Instance is a tenant's MQTT instance.
type Instance struct {
	ID     string
	OrgID  string
	Name   string
	Plan   string
	Status string
	// NodeID is the node the instance was first placed on, its preferred
	// node for requests; CellID the cell it is placed on (every node of
	// the cell serves it).
	NodeID    string
	CellID    string
	Endpoints map[string]string // mqtt, mqtts, ws, wss → URL: the cell's override, else its first live node's
	// Cell is the instance's cell with its status and nodes (set by
	// Instance, ListInstances and CreateInstance).
	Cell               *CellInfo
	AllowAnonymous     bool
	DeletionProtection bool
	Quotas             Quotas
	// Limited is the billing limit in force ("" none, LimitThrottle
	// or LimitSuspend), set by SetOrgLimit.
	Limited   string
	CreatedAt time.Time
	UpdatedAt time.Time
	// ConfigRevision is the config revision of the instance's latest
	// change; NodeAppliedRevision what every live node of its cell has
	// acknowledged applying.
	ConfigRevision      int64
	NodeAppliedRevision int64
}

// InSync reports whether the instance's node has applied its latest change.
func (in Instance) InSync() bool { return in.NodeAppliedRevision >= in.ConfigRevision }

// NewInstance is what creating an instance takes.
type NewInstance struct {
	Name           string
	AllowAnonymous bool
	// DeletionProtection nil takes the plan's default: on for paid plans,
	// off on Free (see ProtectionDefault).
	DeletionProtection *bool
}

// ProtectionDefault is deletion protection's default for a new instance
// on plan: on for every paid plan, off on Free (so trying things out stays
// one click; the console says so).
func ProtectionDefault(plan string) bool { return plan != "free" }

// InstancePatch changes an instance; nil fields stay. Status may be
// "suspended" (refuse and close connections) or "running" (resume).
type InstancePatch struct {
	Name               *string
	AllowAnonymous     *bool
	DeletionProtection *bool
	Status             *string
}

// ErrDeletionProtected: the instance has deletion protection on.
var ErrDeletionProtected = errors.New("deletion protection is on; turn it off first")

// newInstanceID returns "i-" + 10 base32 characters (50 random bits).
func newInstanceID() string { return "i-" + randomToken(7)[:10] }

func checkInstanceName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len([]rune(name)) > 63 {
		return "", invalid("name", "must be 1 to 63 characters")
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return "", invalid("name", "must not contain control characters")
		}
	}
	return name, nil
}

// CreateInstance creates an instance on the least-loaded cell with a live
// node (pickCell), with
// the plan's quotas, a token-signing key and one rule allowing everything
// (so the first device works; the console says so). Its config is pushed
// to every node of the cell in the same transaction.
func (s *Service) CreateInstance(ctx context.Context, a Actor, orgID string, in NewInstance) (Instance, error) {
	name, err := checkInstanceName(in.Name)
	if err != nil {
		return Instance{}, err
	}
	var out Instance
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		// FOR UPDATE: instance creations of one org run one at a time, so
		// the plan's instance limit holds.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM orgs WHERE id = $1 FOR UPDATE`, orgID); err != nil {
			return fmt.Errorf("lock org: %w", err)
		}
		if err := s.checkOrgLimit(ctx, tx, orgID, limitInstances, "", 1); err != nil {
			return err
		}
		grant, err := s.orgPlan(ctx, tx, orgID)
		if err != nil {
			return err
		}
		plan, quotas := grant.ID, grant.Quotas
		cellID, nodeID, err := s.pickCell(ctx, tx)
		if err != nil {
			return err
		}
		now := s.nowUTC()
		protect := ProtectionDefault(plan)
		if in.DeletionProtection != nil {
			protect = *in.DeletionProtection
		}
		out = Instance{ID: newInstanceID(), OrgID: orgID, Name: name, Plan: plan, Status: InstanceProvisioning, NodeID: nodeID, CellID: cellID,
			AllowAnonymous: in.AllowAnonymous, DeletionProtection: protect, Quotas: quotas, CreatedAt: now, UpdatedAt: now}
		qj, _ := json.Marshal(quotas)
		_, err = tx.Exec(ctx, `INSERT INTO instances (id, org_id, name, plan_id, status, node_id, cell_id, allow_anonymous, deletion_protection, quotas, created_at, updated_at)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$11)`, out.ID, orgID, name, plan, out.Status, nodeID, cellID, in.AllowAnonymous, protect, qj, now)
		if isUniqueViolation(err) {
			return taken("name", "an instance with this name exists in the org")
		}
		if err != nil {
			return fmt.Errorf("insert instance: %w", err)
		}
		rule := ACLRule{ID: NewID("r"), Effect: EffectAllow, Action: ActionAll, Filter: "#"}
		if _, err := tx.Exec(ctx, `INSERT INTO acl_rules (id, instance_id, effect, action, filter, created_at) VALUES ($1,$2,$3,$4,$5,$6)`,
			rule.ID, out.ID, rule.Effect, rule.Action, rule.Filter, now); err != nil {
			return fmt.Errorf("insert default acl rule: %w", err)
		}
		key, err := s.newTokenKey(ctx, tx, out.ID, now)
		if err != nil {
			return err
		}
		ci := nodelink.Instance{ID: out.ID, OrgID: orgID, Status: out.Status, AllowAnonymous: in.AllowAnonymous, Quotas: *linkQuotas(quotas),
			ACL: linkACL([]ACLRule{rule}), TokenKeys: []nodelink.TokenKey{key}}
		rev, err := emit(ctx, tx, nodeID, out.ID, nodelink.Event{Kind: nodelink.KindInstancePut, InstanceID: out.ID, Instance: &ci})
		if err != nil {
			return err
		}
		out.ConfigRevision = rev
		if _, err := tx.Exec(ctx, `UPDATE instances SET provisioned_revision = $2 WHERE id = $1`, out.ID, rev); err != nil {
			return fmt.Errorf("instance revision: %w", err)
		}
		if err := s.audit(ctx, tx, a, orgID, "instance.create", out.ID); err != nil {
			return err
		}
		return s.fillCells(ctx, tx, []*Instance{&out})
	})
	if err != nil {
		return Instance{}, err
	}
	return out, nil
}

// newTokenKey creates an Ed25519 key that signs the instance's device tokens.
func (s *Service) newTokenKey(ctx context.Context, tx pgx.Tx, instanceID string, now time.Time) (nodelink.TokenKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nodelink.TokenKey{}, fmt.Errorf("token key: %w", err)
	}
	k := nodelink.TokenKey{KID: "k" + randomToken(5), Algorithm: "EdDSA", PublicKey: pub}
	if _, err := tx.Exec(ctx, `INSERT INTO instance_token_keys (instance_id, kid, private_key, public_key, created_at) VALUES ($1,$2,$3,$4,$5)`,
		instanceID, k.KID, s.sealSecret(priv.Seed(), tokenKeyAAD(instanceID, k.KID)), []byte(pub), now); err != nil {
		return nodelink.TokenKey{}, fmt.Errorf("insert token key: %w", err)
	}
	return k, nil
}

const instanceCols = `i.id, i.org_id, i.name, i.plan_id, i.status, i.node_id, i.cell_id, i.allow_anonymous, i.deletion_protection,
	i.quotas, i.limited, i.created_at, i.updated_at,
	coalesce((SELECT r.revision FROM instance_config_revisions r WHERE r.instance_id = i.id), 0)`

func scanInstance(r pgx.CollectableRow) (Instance, error) {
	var in Instance
	var q []byte
	if err := r.Scan(&in.ID, &in.OrgID, &in.Name, &in.Plan, &in.Status, &in.NodeID, &in.CellID, &in.AllowAnonymous,
		&in.DeletionProtection, &q, &in.Limited, &in.CreatedAt, &in.UpdatedAt, &in.ConfigRevision); err != nil {
		return Instance{}, err
	}
	in.Endpoints = map[string]string{}
	if err := json.Unmarshal(q, &in.Quotas); err != nil {
		return Instance{}, fmt.Errorf("instance %s quotas: %w", in.ID, err)
	}
	return in, nil
}

// ListInstances lists an org's instances oldest first (by creation time,
// then ID: instance IDs are random).
func (s *Service) ListInstances(ctx context.Context, orgID string, p Page) ([]Instance, string, error) {
	var afterT time.Time
	afterID := ""
	if p.After != "" {
		ts, id, ok := strings.Cut(p.After, "|")
		t, err := time.Parse(time.RFC3339Nano, ts)
		if !ok || err != nil {
			return nil, "", invalid("cursor", "is not a cursor this API returned")
		}
		afterT, afterID = t, id
	}
	rows, err := s.db.Query(ctx, `SELECT `+instanceCols+` FROM instances i
		WHERE i.org_id = $1 AND (i.created_at, i.id) > ($2, $3) AND ($5 = '' OR i.name = $5) ORDER BY i.created_at, i.id LIMIT $4`,
		orgID, afterT, afterID, p.limit()+1, p.Name)
	if err != nil {
		return nil, "", fmt.Errorf("list instances: %w", err)
	}
	list, err := pgx.CollectRows(rows, scanInstance)
	if err != nil {
		return nil, "", fmt.Errorf("list instances: %w", err)
	}
	list, next := trimPage(list, p.limit(), func(i Instance) string { return i.CreatedAt.UTC().Format(time.RFC3339Nano) + "|" + i.ID })
	ptrs := make([]*Instance, len(list))
	for i := range list {
		ptrs[i] = &list[i]
	}
	if err := s.fillCells(ctx, s.db, ptrs); err != nil {
		return nil, "", err
	}
	return list, next, nil
}

// Instance returns one instance of the org.
func (s *Service) Instance(ctx context.Context, orgID, id string) (Instance, error) {
	in, err := s.instance(ctx, s.db, orgID, id, false)
	if err == nil {
		err = s.fillCells(ctx, s.db, []*Instance{&in})
	}
	return in, err
}

// fillCells sets each instance's cell, endpoints and applied revision, and
// shows a provisioning or running instance none of whose cell's nodes has
// reported within the liveness window as unavailable.
func (s *Service) fillCells(ctx context.Context, q querier, list []*Instance) error {
	if len(list) == 0 {
		return nil
	}
	ids := make([]string, 0, len(list))
	for _, in := range list {
		ids = append(ids, in.CellID)
	}
	cells, err := s.cellInfos(ctx, q, ids)
	if err != nil {
		return err
	}
	for _, in := range list {
		c := cells[in.CellID]
		if c == nil {
			c = &CellInfo{ID: in.CellID, Status: CellDown}
		}
		in.Cell, in.Endpoints, in.NodeAppliedRevision = c, c.Endpoints(), c.AppliedRevision()
		if (in.Status == InstanceRunning || in.Status == InstanceProvisioning) && c.Status == CellDown {
			in.Status = InstanceUnavailable
		}
	}
	return nil
}

func (s *Service) instance(ctx context.Context, q querier, orgID, id string, lock bool) (Instance, error) {
	sql := `SELECT ` + instanceCols + ` FROM instances i WHERE i.org_id = $1 AND i.id = $2`
	if lock {
		sql += ` FOR UPDATE OF i`
	}
	rows, err := q.Query(ctx, sql, orgID, id)
	if err != nil {
		return Instance{}, fmt.Errorf("get instance: %w", err)
	}
	in, err := pgx.CollectExactlyOneRow(rows, scanInstance)
	if err != nil {
		return Instance{}, fmt.Errorf("instance %s: %w", id, notFound(err))
	}
	return in, nil
}

// InstanceOrgs maps instance IDs to their orgs (for metering); unknown IDs
// are left out.
func (s *Service) InstanceOrgs(ctx context.Context, ids []string) (map[string]string, error) {
	rows, err := s.db.Query(ctx, `SELECT id, org_id FROM instances WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("instance orgs: %w", err)
	}
	defer rows.Close()
	out := make(map[string]string, len(ids))
	for rows.Next() {
		var id, org string
		if err := rows.Scan(&id, &org); err != nil {
			return nil, fmt.Errorf("instance orgs: %w", err)
		}
		out[id] = org
	}
	return out, rows.Err()
}

// UpdateInstance applies p. expectUpdated, when set, must equal the
// instance's UpdatedAt (optimistic concurrency, ErrStale otherwise).
func (s *Service) UpdateInstance(ctx context.Context, a Actor, orgID, id string, p InstancePatch, expectUpdated *time.Time) (Instance, error) {
	if p.Name != nil {
		name, err := checkInstanceName(*p.Name)
		if err != nil {
			return Instance{}, err
		}
		p.Name = &name
	}
	if p.Status != nil && *p.Status != InstanceRunning && *p.Status != InstanceSuspended {
		return Instance{}, invalid("status", "must be running or suspended")
	}
	var out Instance
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		cur, err := s.instance(ctx, tx, orgID, id, true)
		if err != nil {
			return err
		}
		if expectUpdated != nil && !cur.UpdatedAt.Equal(*expectUpdated) {
			return ErrStale
		}
		next := cur
		if p.Name != nil {
			next.Name = *p.Name
		}
		if p.AllowAnonymous != nil {
			next.AllowAnonymous = *p.AllowAnonymous
		}
		if p.DeletionProtection != nil {
			next.DeletionProtection = *p.DeletionProtection
		}
		if p.Status != nil && *p.Status != cur.Status {
			if cur.Status == InstanceDeleting {
				return fmt.Errorf("%w: the instance is being deleted", ErrConflict)
			}
			if !(cur.Status == InstanceProvisioning && *p.Status == InstanceRunning) {
				next.Status = *p.Status
			}
		}
		if reflect.DeepEqual(next, cur) {
			out = cur
			return nil
		}
		next.UpdatedAt = s.nowUTC()
		_, err = tx.Exec(ctx, `UPDATE instances SET name = $2, allow_anonymous = $3, deletion_protection = $4, status = $5, updated_at = $6 WHERE id = $1`,
			id, next.Name, next.AllowAnonymous, next.DeletionProtection, next.Status, next.UpdatedAt)
		if isUniqueViolation(err) {
			return taken("name", "an instance with this name exists in the org")
		}
		if err != nil {
			return fmt.Errorf("update instance: %w", err)
		}
		if next.Status != cur.Status || next.AllowAnonymous != cur.AllowAnonymous {
			ev := nodelink.Event{Kind: nodelink.KindInstanceStatus, InstanceID: id,
				Instance: &nodelink.Instance{ID: id, Status: next.Status, AllowAnonymous: next.AllowAnonymous, Limited: cur.Limited}}
			rev, err := emit(ctx, tx, cur.NodeID, id, ev)
			if err != nil {
				return err
			}
			next.ConfigRevision = rev
		}
		action := "instance.update"
		if next.Status != cur.Status {
			action = "instance." + map[string]string{InstanceSuspended: "suspend", InstanceRunning: "resume"}[next.Status]
		}
		out = next
		return s.audit(ctx, tx, a, orgID, action, id)
	})
	return out, err
}

// DeleteInstance deletes an instance and everything in it; the node closes
// its connections and forgets it.
func (s *Service) DeleteInstance(ctx context.Context, a Actor, orgID, id string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		cur, err := s.instance(ctx, tx, orgID, id, true)
		if err != nil {
			return err
		}
		if cur.DeletionProtection {
			return fmt.Errorf("instance %s: %w", id, ErrDeletionProtected)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM instances WHERE id = $1`, id); err != nil {
			return fmt.Errorf("delete instance: %w", err)
		}
		if _, err := emit(ctx, tx, cur.NodeID, id, nodelink.Event{Kind: nodelink.KindInstanceDelete, InstanceID: id}); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, orgID, "instance.delete", id)
	})
}

// InstanceQuotas returns the instance's quotas and the ceilings its plan
// allows.
func (s *Service) InstanceQuotas(ctx context.Context, orgID, id string) (Quotas, Quotas, error) {
	in, err := s.Instance(ctx, orgID, id)
	if err != nil {
		return Quotas{}, Quotas{}, err
	}
	plan, err := s.orgPlan(ctx, s.db, orgID)
	if err != nil {
		return Quotas{}, Quotas{}, err
	}
	return in.Quotas, plan.Quotas, nil
}

// quotaValues returns the quotas as (json name → value).
func quotaValues(q Quotas) map[string]int64 {
	b, _ := json.Marshal(q)
	var m map[string]int64
	_ = json.Unmarshal(b, &m)
	return m
}

func sortFields(f []FieldError) {
	sort.Slice(f, func(i, j int) bool { return f[i].Field < f[j].Field })
}

func quotasFrom(m map[string]int64) Quotas {
	b, _ := json.Marshal(m)
	var q Quotas
	_ = json.Unmarshal(b, &q)
	return q
}

// SetInstanceQuotas replaces the instance's quotas. Every value must be at
// most what the org's plan grants; a value left 0 takes the plan's. The node
// applies them to live connections.
func (s *Service) SetInstanceQuotas(ctx context.Context, a Actor, orgID, id string, q Quotas) (Quotas, error) {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		cur, err := s.instance(ctx, tx, orgID, id, true)
		if err != nil {
			return err
		}
		plan, err := s.orgPlan(ctx, tx, orgID)
		if err != nil {
			return err
		}
		want, ceil := quotaValues(q), quotaValues(plan.Quotas)
		var fields []FieldError
		for name, v := range want {
			if v == 0 { // not given: the plan's value
				want[name], v = ceil[name], ceil[name]
			}
			switch {
			case v < 0:
				fields = append(fields, FieldError{Field: name, Message: "must be at least 1"})
			case ceil[name] > 0 && v > ceil[name]:
				fields = append(fields, FieldError{Field: name, Message: fmt.Sprintf("must be at most %d on your plan", ceil[name])})
			}
		}
		if len(fields) > 0 {
			sortFields(fields)
			return &ValidationError{Fields: fields}
		}
		q = quotasFrom(want)
		if q == cur.Quotas {
			return nil
		}
		return s.putQuotas(ctx, tx, a, cur, q)
	})
	if err != nil {
		return Quotas{}, err
	}
	return q, nil
}

func (s *Service) putQuotas(ctx context.Context, tx pgx.Tx, a Actor, in Instance, q Quotas) error {
	qj, _ := json.Marshal(q)
	if _, err := tx.Exec(ctx, `UPDATE instances SET quotas = $2, updated_at = $3 WHERE id = $1`, in.ID, qj, s.nowUTC()); err != nil {
		return fmt.Errorf("update quotas: %w", err)
	}
	if _, err := emit(ctx, tx, in.NodeID, in.ID, nodelink.Event{Kind: nodelink.KindQuotasPut, InstanceID: in.ID, Quotas: linkQuotas(q)}); err != nil {
		return err
	}
	return s.audit(ctx, tx, a, in.OrgID, "instance.quotas", in.ID)
}

// ApplyPlanQuotas moves every instance of the org to a new plan's quotas:
// a value the user had lowered below the old plan's stays when the new
// plan still allows it; everything else takes the new plan's value.
func (s *Service) ApplyPlanQuotas(ctx context.Context, orgID, planID string, plan Quotas) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, plan_id FROM instances WHERE org_id = $1 ORDER BY id FOR UPDATE`, orgID)
		if err != nil {
			return fmt.Errorf("plan instances: %w", err)
		}
		type row struct {
			id      string
			oldPlan Quotas
		}
		var list []row
		var planIDs []string
		for rows.Next() {
			var r row
			var pid string
			if err := rows.Scan(&r.id, &pid); err != nil {
				rows.Close()
				return fmt.Errorf("plan instances: %w", err)
			}
			list, planIDs = append(list, r), append(planIDs, pid)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("plan instances: %w", err)
		}
		granted := map[string]Quotas{} // by plan ID
		for i, pid := range planIDs {
			if _, ok := granted[pid]; !ok {
				g, err := s.plan(ctx, tx, pid)
				if err != nil {
					return err
				}
				granted[pid] = g.Quotas
			}
			list[i].oldPlan = granted[pid]
		}
		for _, r := range list {
			cur, err := s.instance(ctx, tx, orgID, r.id, false)
			if err != nil {
				return err
			}
			have, old, ceil := quotaValues(cur.Quotas), quotaValues(r.oldPlan), quotaValues(plan)
			next := map[string]int64{}
			for name, c := range ceil {
				v := have[name]
				if v <= 0 || v == old[name] || (c > 0 && v > c) {
					v = c
				}
				next[name] = v
			}
			q := quotasFrom(next)
			if _, err := tx.Exec(ctx, `UPDATE instances SET plan_id = $2 WHERE id = $1`, r.id, planID); err != nil {
				return fmt.Errorf("instance plan: %w", err)
			}
			if q != cur.Quotas {
				if err := s.putQuotas(ctx, tx, Actor{UserID: "system"}, cur, q); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
