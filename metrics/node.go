package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Node measures imagedrop's updates of its own Node object (condition,
// startup taint, label), which only run with --node-name. Create it with
// NewNode; its methods are safe for concurrent use.
type Node struct {
	failures prometheus.Counter
	pending  prometheus.Gauge
}

// NewNode registers the node metrics on reg.
func NewNode(reg prometheus.Registerer) *Node {
	f := promauto.With(reg)
	return &Node{
		failures: f.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "node_update_failures_total",
			Help: "Failed updates of the node's condition, startup taint or label (API server unreachable, slow or refusing); each is retried with backoff, imports go on."}),
		pending: f.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "node_update_pending",
			Help: "1 while the node's Kubernetes object lags behind imagedrop's state because updates fail, else 0."}),
	}
}

// UpdateFailed reports a failed update of the Node; it stays pending until
// UpdateSucceeded.
func (n *Node) UpdateFailed() {
	n.failures.Inc()
	n.pending.Set(1)
}

// UpdateSucceeded reports that the Node shows what imagedrop knows.
func (n *Node) UpdateSucceeded() { n.pending.Set(0) }
