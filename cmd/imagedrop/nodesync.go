package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/imagedrop/imagedrop/metrics"
	"github.com/imagedrop/imagedrop/watcher"
)

// How often the node reporter reads the watcher's status. The API server
// is only called when something is due (see nodeSync).
const nodePoll = time.Second

// nodeAPI is the part of the core API the node reporter uses; the typed
// core client has it.
type nodeAPI interface {
	Nodes() typedcorev1.NodeInterface
	Events(namespace string) typedcorev1.EventInterface
}

// nodeReporter maintains imagedrop's condition, startup taint and label on
// its own Node, and records Events about the node's images. It runs beside
// the watcher and never blocks it: a failed API call is logged, counted and
// retried with backoff.
type nodeReporter struct {
	cfg    nodeConfig
	taint  *corev1.Taint
	label  [2]string // key, value; key "" when off
	client nodeAPI
	events record.EventRecorder
	bcast  record.EventBroadcaster
	ref    *corev1.ObjectReference
	log    *slog.Logger
	m      *metrics.Node
	now    func() time.Time

	unpinned atomic.Int64 // images unpinned since the last poll
}

func newNodeReporter(cfg nodeConfig, client nodeAPI, m *metrics.Node, log *slog.Logger) *nodeReporter {
	taint, _ := cfg.startupTaint()   // checked by validate
	key, value, _ := cfg.nodeLabel() // likewise
	// client-go's own messages (event sink retries) go to imagedrop's log.
	klog.SetSlogLogger(log.With("component", "client-go"))
	// The correlator aggregates similar Events (same reason, other
	// messages) and rate-limits them: --event-burst, then --event-rate per
	// minute, for each reason apart, so a flood of failing files cannot
	// crowd out the Event that the taint was removed.
	b := record.NewBroadcaster(record.WithCorrelatorOptions(record.CorrelatorOptions{
		QPS: float32(cfg.eventRate / 60), BurstSize: cfg.eventBurst,
		SpamKeyFunc: func(e *corev1.Event) string {
			return e.Source.Host + "/" + e.InvolvedObject.Name + "/" + e.Type + "/" + e.Reason
		},
	}))
	name := cfg.kube.nodeName
	return &nodeReporter{
		cfg: cfg, taint: taint, label: [2]string{key, value},
		client: client, bcast: b, log: log, m: m, now: time.Now,
		events: b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "imagedrop", Host: name}),
		// As kubelet refers to its node in Events: the name as UID.
		ref: &corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: name, UID: types.UID(name)},
	}
}

// Unpinned is the watcher Observer's hook: n images were unpinned.
func (r *nodeReporter) Unpinned(n int) { r.unpinned.Add(int64(n)) }

// nodeSync is what the reporter's loop knows of the Node; only Run's
// goroutine touches it.
type nodeSync struct {
	start     time.Time
	attempts  map[string]attempt // per file, as last seen, for failure Events
	wasReady  bool               // the preload's end was announced
	taintKept bool               // the Event saying the taint stays was sent
	taintDone bool               // removed, or found absent
	labelDone bool

	read       bool          // the Node was read once (taint, condition)
	sent       nodeCondition // as last written
	sentAt     time.Time
	transition time.Time // of sent.status
	failures   int       // consecutive failed syncs
	retryAt    time.Time
}

// Run polls the watcher's status every second until ctx ends.
func (r *nodeReporter) Run(ctx context.Context, status func() watcher.Status) error {
	r.bcast.StartRecordingToSink(retryForbiddenSink{&typedcorev1.EventSinkImpl{Interface: r.client.Events("")}})
	defer r.bcast.Shutdown()
	st := &nodeSync{start: r.now(), attempts: map[string]attempt{}}
	t := time.NewTicker(nodePoll)
	defer t.Stop()
	for {
		r.step(ctx, st, status())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// step records the Events due, then updates the Node if something is due
// and no retry is waiting.
func (r *nodeReporter) step(ctx context.Context, st *nodeSync, s watcher.Status) {
	p := summarize(s)
	r.recordEvents(st, s, p)
	now := r.now()
	if now.Before(st.retryAt) {
		return
	}
	if err := r.sync(ctx, st, p, now); err != nil {
		st.failures++
		delay := watcher.Backoff{Min: time.Second, Max: r.cfg.statusInterval}.Delay(st.failures)
		st.retryAt = now.Add(delay)
		r.m.UpdateFailed()
		r.log.Warn("node_update_failed", "node", r.cfg.kube.nodeName, "err", err, "failures", st.failures, "retry_in", delay)
		return
	}
	if st.failures > 0 {
		r.log.Info("node_update_restored", "node", r.cfg.kube.nodeName, "after_failures", st.failures)
	}
	st.failures = 0
	r.m.UpdateSucceeded()
}

// recordEvents hands the Events that s makes due to the recorder, which
// sends them in the background.
func (r *nodeReporter) recordEvents(st *nodeSync, s watcher.Status, p preload) {
	for _, f := range newFailures(st.attempts, s) {
		r.events.Eventf(r.ref, corev1.EventTypeWarning, "FileFailed", "%s: %s", f.path, f.err)
	}
	if n := r.unpinned.Swap(0); n > 0 {
		r.events.Eventf(r.ref, corev1.EventTypeNormal, "ImagesUnpinned", "%d image(s) unpinned: no present file provides them; kubelet's image GC may remove them", n)
	}
	if p.ready && !st.wasReady {
		st.wasReady = true
		c := p.condition()
		if p.phase() == phaseComplete {
			r.events.Event(r.ref, corev1.EventTypeNormal, reasonComplete, c.message)
		} else {
			r.events.Event(r.ref, corev1.EventTypeWarning, "PreloadFailed", c.message)
		}
	}
	if st.read && !st.taintDone && !st.taintKept && p.phase() == phaseFailing && r.cfg.taintPolicy == taintKeep {
		st.taintKept = true
		r.events.Eventf(r.ref, corev1.EventTypeWarning, "StartupTaintKept",
			"taint %s stays until the failing files succeed (--taint-policy keep): %s", r.taint.ToString(), p.condition().message)
	}
}

// sync writes to the Node what is due: the condition when it changed or at
// --node-status-interval, the taint's removal, the label.
func (r *nodeReporter) sync(ctx context.Context, st *nodeSync, p preload, now time.Time) error {
	nodes := r.client.Nodes()
	if !st.read {
		node, err := nodes.Get(ctx, r.cfg.kube.nodeName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get node %s: %w", r.cfg.kube.nodeName, err)
		}
		st.read = true
		// A node registered without the taint has nothing to wait for.
		st.taintDone = r.taint == nil || !slices.ContainsFunc(node.Spec.Taints, func(t corev1.Taint) bool { return r.taint.MatchTaint(&t) })
		for _, c := range node.Status.Conditions {
			if string(c.Type) == r.cfg.condition {
				st.sent.status, st.transition = c.Status, c.LastTransitionTime.Time
			}
		}
	}
	if c := p.condition(); r.conditionDue(st, c, now) {
		if err := r.patchCondition(ctx, st, c, now); err != nil {
			return err
		}
	}
	if due, why := r.cfg.taintDue(p, now.Sub(st.start)); due && !st.taintDone {
		if err := r.removeTaint(ctx, why); err != nil {
			return err
		}
		st.taintDone = true
	}
	if r.label[0] != "" && !st.labelDone && p.phase() == phaseComplete {
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{r.label[0]: r.label[1]}}})
		if _, err := nodes.Patch(ctx, r.cfg.kube.nodeName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("label node %s: %w", r.cfg.kube.nodeName, err)
		}
		st.labelDone = true
		r.log.Info("node_labelled", "node", r.cfg.kube.nodeName, "label", r.cfg.label)
	}
	return nil
}

// heartbeats is how many --node-status-interval an unchanged condition
// waits before it is written again (its heartbeat): 5, so 5m by default, as
// kubelet reports an unchanged node status.
const heartbeats = 5

// conditionDue says whether c is written now: at once when its status or
// reason changed, after --node-status-interval when only its message did,
// after heartbeats of them when nothing did.
func (r *nodeReporter) conditionDue(st *nodeSync, c nodeCondition, now time.Time) bool {
	age := now.Sub(st.sentAt)
	switch {
	case st.sentAt.IsZero() || c.status != st.sent.status || c.reason != st.sent.reason:
		return true
	case c.message != st.sent.message:
		return age >= r.cfg.statusInterval
	}
	return age >= heartbeats*r.cfg.statusInterval
}

// patchCondition writes the condition with a strategic merge patch of
// nodes/status, which merges conditions by type: kubelet's stay as they are.
func (r *nodeReporter) patchCondition(ctx context.Context, st *nodeSync, c nodeCondition, now time.Time) error {
	if c.status != st.sent.status || st.transition.IsZero() {
		st.transition = now
	}
	cond := corev1.NodeCondition{
		Type: corev1.NodeConditionType(r.cfg.condition), Status: c.status, Reason: c.reason, Message: c.message,
		LastHeartbeatTime: metav1.NewTime(now), LastTransitionTime: metav1.NewTime(st.transition),
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{cond}}})
	if err != nil {
		return err
	}
	if _, err := r.client.Nodes().PatchStatus(ctx, r.cfg.kube.nodeName, patch); err != nil {
		return fmt.Errorf("set condition %s=%s on node %s: %w", r.cfg.condition, c.status, r.cfg.kube.nodeName, err)
	}
	if c.reason != st.sent.reason {
		r.log.Info("node_condition", "node", r.cfg.kube.nodeName, "type", r.cfg.condition, "status", c.status, "reason", c.reason, "message", c.message)
	}
	st.sent, st.sentAt = c, now
	return nil
}

// removeTaint removes the startup taint with a JSON patch that first tests
// the taint is still where it was read, so a concurrent change of the
// node's taints makes the patch fail (and be retried), never lost.
func (r *nodeReporter) removeTaint(ctx context.Context, why string) error {
	nodes := r.client.Nodes()
	node, err := nodes.Get(ctx, r.cfg.kube.nodeName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get node %s: %w", r.cfg.kube.nodeName, err)
	}
	i := -1
	for j, t := range node.Spec.Taints {
		if t.MatchTaint(r.taint) {
			i = j
		}
	}
	if i < 0 {
		r.log.Info("startup_taint_absent", "node", node.Name, "taint", r.taint.ToString())
		return nil
	}
	path := fmt.Sprintf("/spec/taints/%d", i)
	patch, _ := json.Marshal([]map[string]any{
		{"op": "test", "path": path, "value": node.Spec.Taints[i]},
		{"op": "remove", "path": path},
	})
	if _, err := nodes.Patch(ctx, node.Name, types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("remove taint %s from node %s: %w", r.taint.ToString(), node.Name, err)
	}
	r.log.Info("startup_taint_removed", "node", node.Name, "taint", r.taint.ToString(), "why", why)
	r.events.Eventf(r.ref, corev1.EventTypeNormal, "StartupTaintRemoved", "taint %s removed: %s", r.taint.ToString(), why)
	return nil
}
