package nodelink_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/aeriemq/aerie/nodelink"
)

// cellNodes is a cell of in-process nodes: each answers as a Server named
// after it; the ones in down are unreachable (ErrNoNode: nothing sent).
type cellNodes struct {
	mu    sync.Mutex
	down  map[string]bool
	calls []string
}

func (c *cellNodes) Call(ctx context.Context, nodeID string, req nodelink.Request, out any) error {
	c.mu.Lock()
	c.calls = append(c.calls, nodeID+":"+req.Op)
	down := c.down[nodeID]
	c.mu.Unlock()
	if down {
		return fmt.Errorf("%w: node %s", nodelink.ErrNoNode, nodeID)
	}
	srv := nodelink.NewServer()
	srv.Handle(nodelink.OpClientsList, func(context.Context, string, json.RawMessage) (any, error) {
		return []nodelink.ClientInfo{{ClientID: "dev-on-" + nodeID}}, nil
	})
	srv.Handle(nodelink.OpClientDisconnect, func(_ context.Context, _ string, body json.RawMessage) (any, error) {
		var ref nodelink.ClientRef
		_ = json.Unmarshal(body, &ref)
		return nodelink.Done{Done: ref.ClientID == "dev-on-"+nodeID}, nil
	})
	srv.Handle(nodelink.OpStats, func(context.Context, string, json.RawMessage) (any, error) {
		return []nodelink.TopicStat{{TopicID: "from-" + nodeID}}, nil
	})
	return (&nodelink.Local{NodeID: nodeID, Server: srv}).Call(ctx, nodeID, req, out)
}

func (c *cellNodes) took() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = nil
	return out
}

// route names the live nodes of the instance's cell, freshest first.
type route []string

func (r route) InstanceNodes(context.Context, string) ([]string, error) { return r, nil }

// TestNodesRouteToTheCell: with a Router, a request about an instance goes
// to the first live node of its cell, and to the next when one cannot be
// reached (never to the preferred node the caller named); the clients list
// merges every live node's answer (sorted), and a disconnect finds the node
// the client is on. Without a Router the named node is asked, as before.
func TestNodesRouteToTheCell(t *testing.T) {
	ctx := context.Background()
	cell := &cellNodes{down: map[string]bool{"n-a": true}}
	n := nodelink.Nodes{Caller: cell, Route: route{"n-a", "n-b", "n-c"}}

	stats, err := n.TopicStats(ctx, "n-old", "i-1")
	if err != nil || len(stats) != 1 || stats[0].TopicID != "from-n-b" {
		t.Fatalf("stats %+v, %v; want n-b's (n-a unreachable)", stats, err)
	}
	if got := cell.took(); !reflect.DeepEqual(got, []string{"n-a:" + nodelink.OpStats, "n-b:" + nodelink.OpStats}) {
		t.Fatalf("calls %v", got)
	}

	clients, err := n.Clients(ctx, "n-old", "i-1")
	if err != nil || len(clients) != 2 || clients[0].ClientID != "dev-on-n-b" || clients[1].ClientID != "dev-on-n-c" {
		t.Fatalf("clients %+v, %v; want the merged answers of n-b and n-c", clients, err)
	}
	cell.took()
	done, err := n.Disconnect(ctx, "n-old", "i-1", "dev-on-n-c")
	if err != nil || !done {
		t.Fatalf("disconnect: %v, %v", done, err)
	}
	if done, err := n.Disconnect(ctx, "n-old", "i-1", "nobody"); err != nil || done {
		t.Fatalf("disconnect of an unknown client: %v, %v", done, err)
	}

	cell.down["n-b"], cell.down["n-c"] = true, true
	if _, err := n.Clients(ctx, "n-old", "i-1"); !errors.Is(err, nodelink.ErrNoNode) {
		t.Fatalf("clients with every node unreachable: %v", err)
	}
	cell.took()
	plain := nodelink.Nodes{Caller: cell}
	if _, err := plain.TopicStats(ctx, "n-x", "i-1"); err != nil {
		t.Fatal(err)
	}
	if got := cell.took(); !reflect.DeepEqual(got, []string{"n-x:" + nodelink.OpStats}) {
		t.Fatalf("without a router: calls %v", got)
	}
}
