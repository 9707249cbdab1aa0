package console

import (
	"context"
	"net/http"
	"time"

	"github.com/aeriemq/aerie/tenancy"
)

// Checklist is the org overview's first-run guide: each step is ticked from
// what really happened (instances and credentials in Postgres; connections
// and messages from the usage reports plus the node's live counters), and
// the overview re-reads it every 2 s.
type Checklist struct {
	Instance, Credential, Connected, Message bool
	// InstanceID is the first instance (for the links of later steps).
	InstanceID string
}

// Done reports whether every step is ticked.
func (k Checklist) Done() bool { return k.Instance && k.Credential && k.Connected && k.Message }

func (c *Console) checklist(ctx context.Context, orgID string, insts []tenancy.Instance) (Checklist, error) {
	var k Checklist
	if len(insts) == 0 {
		return k, nil
	}
	k.Instance, k.InstanceID = true, insts[0].ID
	now := c.now()
	for _, in := range insts {
		if !k.Credential {
			creds, _, err := c.svc.ListCredentials(ctx, orgID, in.ID, tenancy.Page{Limit: 1})
			if err != nil {
				return k, err
			}
			k.Credential = len(creds) > 0
		}
		if k.Connected && k.Message {
			continue
		}
		if c.nodes != nil {
			if u, err := c.nodes.PendingUsage(ctx, in.NodeID, in.ID); err == nil {
				k.Connected = k.Connected || u.Connections > 0 || u.Connects > 0
				k.Message = k.Message || u.MessagesIn > 0
			}
		}
		if c.meter != nil && !(k.Connected && k.Message) {
			pts, err := c.meter.Series(ctx, orgID, in.ID, now.Add(-7*24*time.Hour), now, time.Hour, now)
			if err != nil {
				return k, err
			}
			for _, p := range pts {
				k.Connected = k.Connected || p.Connects > 0 || p.ConnectionsMax > 0
				k.Message = k.Message || p.MessagesIn > 0
			}
		}
	}
	return k, nil
}

// checklistPart answers the checklist alone, for the overview's refresh.
func (c *Console) checklistPart(w http.ResponseWriter, r *http.Request) {
	o := orgFrom(r.Context())
	if r.Header.Get("X-Partial") == "" {
		seeOther(w, r, "/orgs/"+o.ID+"/")
		return
	}
	insts, _, err := c.svc.ListInstances(r.Context(), o.ID, tenancy.Page{Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	k, err := c.checklist(r.Context(), o.ID, insts)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	p := c.page(w, r, o.Name, "overview")
	c.render(w, r, http.StatusOK, ChecklistRegion(p, k))
}
