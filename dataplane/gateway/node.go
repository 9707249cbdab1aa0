package gateway

import "sync/atomic"

// Connections is the number of clients connected to this node (all
// instances), for the control plane's placement.
func (g *Gateway) Connections() int64 { return atomic.LoadInt64(&g.srv.Info.ClientsConnected) }
