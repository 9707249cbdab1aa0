package main

import (
	"context"
	"log/slog"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/aeriemq/aerie/internal/buildinfo"
	"github.com/aeriemq/aerie/tenancy"
)

// newProcessRegistry returns the registry of the process-wide metrics: Go
// runtime, process (CPU, memory, file descriptors) and build information.
func newProcessRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "aerie", Name: "build_info",
		Help: "1, labelled with the version, commit and Go version of this binary."}, []string{"version", "commit", "goversion"})
	info.WithLabelValues(buildinfo.Version, buildinfo.Commit(), runtime.Version()).Set(1)
	reg.MustRegister(info)
	return reg
}

// metricsHandler serves every gatherer's families as one exposition.
func metricsHandler(log *slog.Logger, gs prometheus.Gatherers) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gs, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError,
		ErrorLog: slogPrinter{log}}))
	return mux
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("metrics", "error", v) }

// controlPlaneCollector reads the operator gauges from Postgres at each
// scrape: nodes up, each node's config revision lag, the outbox depth, each
// cell's nodes up.
type controlPlaneCollector struct {
	svc                                      *tenancy.Service
	dbUp, nodesUp, nodeUp, lag, insts, depth *prometheus.Desc
	cellNodesUp, cellNodes                   *prometheus.Desc
}

func newControlPlaneCollector(svc *tenancy.Service) *controlPlaneCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("aerie_"+name, help, labels, nil)
	}
	return &controlPlaneCollector{svc: svc,
		dbUp:        d("controlplane_database_up", "1 when the control plane could read its gauges from Postgres at this scrape."),
		nodesUp:     d("nodes_up", "Data-plane nodes that reported within the liveness window."),
		nodeUp:      d("node_up", "1 when the node reported within the liveness window (--node-down-after).", "node", "node_name", "cell"),
		lag:         d("node_config_revision_lag", "Config revisions meant for the node that it has not applied.", "node", "node_name"),
		insts:       d("node_instances", "Instances placed on the node.", "node", "node_name"),
		depth:       d("config_outbox_depth", "Config changes kept in the outbox for nodes."),
		cellNodesUp: d("cell_nodes_up", "Nodes of the cell that reported within the liveness window (fewer than aerie_cell_nodes: degraded; 0: down).", "cell"),
		cellNodes:   d("cell_nodes", "Registered nodes of the cell.", "cell"),
	}
}

func (c *controlPlaneCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.dbUp, c.nodesUp, c.nodeUp, c.lag, c.insts, c.depth, c.cellNodesUp, c.cellNodes} {
		ch <- d
	}
}

func (c *controlPlaneCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.svc.OpsStats(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.dbUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.dbUp, prometheus.GaugeValue, 1)
	up := 0
	for _, n := range st.Nodes {
		v := 0.0
		if n.Up {
			v, up = 1, up+1
		}
		ch <- prometheus.MustNewConstMetric(c.nodeUp, prometheus.GaugeValue, v, n.ID, n.Name, n.Cell)
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(n.RevisionLag), n.ID, n.Name)
		ch <- prometheus.MustNewConstMetric(c.insts, prometheus.GaugeValue, float64(n.Instances), n.ID, n.Name)
	}
	ch <- prometheus.MustNewConstMetric(c.nodesUp, prometheus.GaugeValue, float64(up))
	for _, cs := range st.Cells {
		ch <- prometheus.MustNewConstMetric(c.cellNodesUp, prometheus.GaugeValue, float64(cs.NodesUp), cs.Name)
		ch <- prometheus.MustNewConstMetric(c.cellNodes, prometheus.GaugeValue, float64(cs.Nodes), cs.Name)
	}
	ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(st.OutboxDepth))
}
