package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
)

// slotLabel marks the Leases of the shared-import semaphore; its value is
// the slot's number.
const slotLabel = "imagedrop.io/shared-import-slot"

// slotPrefix starts the name of every slot's Lease: imagedrop-shared-import-0…
const slotPrefix = "imagedrop-shared-import-"

// errSlotLost is the cause of a held slot's context when another node took
// the slot over (this one failed to renew it for a lease duration).
var errSlotLost = errors.New("shared-import slot lost: not renewed within the lease duration")

// leaseSlots is a cluster-wide counting semaphore: n Lease objects, each one
// slot, held by at most one node (its holderIdentity) at a time. Every
// update carries the resourceVersion read before it, so of two nodes that
// try to take one slot, one gets a conflict and tries another. A holder
// renews its Lease every duration/3; a slot whose Lease this process has seen
// unchanged for the Lease's duration, by its own clock, belongs to a node
// that stopped (clock skew between nodes plays no part), and may be taken
// over, as client-go's leader election does.
type leaseSlots struct {
	leases   coordinationclient.LeaseInterface
	node     string
	n        int
	duration time.Duration
	log      *slog.Logger

	// mu serialises taking and giving back slots within this process, so
	// that one job never mistakes another job's fresh Lease (its holder is
	// this node) for one left by an earlier run of this node.
	mu   sync.Mutex
	held map[string]bool          // slot names this process holds
	seen map[string]leaseSighting // per slot, its version as first seen unchanged
}

// leaseSighting is when this process first saw a Lease at a version.
type leaseSighting struct {
	version string
	at      time.Time
}

var _ slots = (*leaseSlots)(nil)

func newLeaseSlots(leases coordinationclient.LeaseInterface, node string, n int, duration time.Duration, log *slog.Logger) *leaseSlots {
	return &leaseSlots{leases: leases, node: node, n: n, duration: duration, log: log,
		held: map[string]bool{}, seen: map[string]leaseSighting{}}
}

// TryAcquire takes a free slot if there is one. If none is free it returns
// a nil context, with the error of the tries that failed, if any: try again
// after RetryDelay. The returned context ends when ctx does or when the slot
// is lost; release gives the slot back.
func (s *leaseSlots) TryAcquire(ctx context.Context) (context.Context, func(), error) {
	h, err := s.tryAcquire(ctx)
	if h == nil {
		return nil, nil, err
	}
	held, cancel := context.WithCancelCause(ctx)
	h.cancel = cancel
	go h.renew(held, s)
	return held, func() { s.release(h) }, nil
}

// RetryDelay is a third of the lease duration, give or take a tenth, so that
// the nodes that wait do not all ask at once.
func (s *leaseSlots) RetryDelay() time.Duration {
	d := s.duration / 3
	return d - d/10 + rand.N(d/5+1)
}

// slotHold is one held slot.
type slotHold struct {
	name   string
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when renew returns
	// lease is the last version written; renew owns it until done.
	lease *coordinationv1.Lease
}

// tryAcquire takes a free slot if there is one, else returns nil and why
// none was taken when that is an error.
func (s *leaseSlots) tryAcquire(ctx context.Context) (*slotHold, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	list, err := s.leases.List(ctx, metav1.ListOptions{LabelSelector: slotLabel})
	if err != nil {
		return nil, fmt.Errorf("list shared-import slots: %w", err)
	}
	existing := map[string]*coordinationv1.Lease{}
	for i := range list.Items {
		existing[list.Items[i].Name] = &list.Items[i]
	}
	now := time.Now()
	var errs []error
	for _, i := range rand.Perm(s.n) { // so the nodes spread over the slots
		name := slotPrefix + strconv.Itoa(i)
		if s.held[name] {
			continue
		}
		l, ok := existing[name]
		if ok && !s.takeable(l, now) {
			continue
		}
		var got *coordinationv1.Lease
		if !ok {
			got, err = s.leases.Create(ctx, s.claim(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
				Name: name, Labels: map[string]string{slotLabel: strconv.Itoa(i)}}}, now), metav1.CreateOptions{})
		} else {
			got, err = s.leases.Update(ctx, s.claim(l.DeepCopy(), now), metav1.UpdateOptions{})
		}
		switch {
		case err == nil:
			s.held[name] = true
			s.log.Info("shared_slot_acquired", "slot", name, "node", s.node)
			return &slotHold{name: name, lease: got, done: make(chan struct{})}, nil
		case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err):
			// Another node was quicker; try the next slot.
		default:
			errs = append(errs, fmt.Errorf("take shared-import slot %s: %w", name, err))
		}
	}
	return nil, errors.Join(errs...)
}

// takeable reports whether l's slot is free: no holder, a holder that is
// this node (a Lease left by an earlier run of imagedrop on it, since this
// process does not hold it), or a holder that has not renewed it for its
// lease duration as this process has watched it.
func (s *leaseSlots) takeable(l *coordinationv1.Lease, now time.Time) bool {
	holder := ""
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	if holder == "" || holder == s.node {
		return true
	}
	seen, ok := s.seen[l.Name]
	if !ok || seen.version != l.ResourceVersion {
		s.seen[l.Name] = leaseSighting{version: l.ResourceVersion, at: now}
		return false
	}
	d := s.duration
	if l.Spec.LeaseDurationSeconds != nil {
		d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	if now.Sub(seen.at) < d {
		return false
	}
	s.log.Warn("shared_slot_expired", "slot", l.Name, "holder", holder, "unchanged_for", now.Sub(seen.at).Round(time.Second))
	return true
}

// claim makes l held by this node from now.
func (s *leaseSlots) claim(l *coordinationv1.Lease, now time.Time) *coordinationv1.Lease {
	t := metav1.NewMicroTime(now)
	secs := int32(max(s.duration/time.Second, 1))
	l.Spec.HolderIdentity = &s.node
	l.Spec.LeaseDurationSeconds = &secs
	l.Spec.AcquireTime = &t
	l.Spec.RenewTime = &t
	return l
}

// renew renews h's Lease every duration/3 until ctx ends; if another node
// took the slot over, it cancels ctx with errSlotLost. Failures to reach the
// API are logged and retried: no other node can take the slot meanwhile
// unless they reach it.
func (h *slotHold) renew(ctx context.Context, s *leaseSlots) {
	defer close(h.done)
	tick := time.NewTicker(s.duration / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		l := h.lease.DeepCopy()
		now := metav1.NewMicroTime(time.Now())
		l.Spec.RenewTime = &now
		got, err := s.leases.Update(ctx, l, metav1.UpdateOptions{})
		switch {
		case err == nil:
			h.lease = got
		case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
			s.log.Warn("shared_slot_lost", "slot", h.name, "err", err)
			h.cancel(errSlotLost)
			return
		case ctx.Err() == nil:
			s.log.Warn("shared_slot_renew_failed", "slot", h.name, "err", err)
		}
	}
}

// release stops renewing h and frees its Lease for the next node. It runs
// on its own short deadline, since the job's context may have ended.
func (s *leaseSlots) release(h *slotHold) {
	h.cancel(context.Canceled)
	<-h.done
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.held, h.name)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l := h.lease.DeepCopy()
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != s.node {
		return
	}
	l.Spec.HolderIdentity = nil
	l.Spec.AcquireTime, l.Spec.RenewTime = nil, nil
	if _, err := s.leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		// Lost meanwhile, or the API is unreachable: the Lease then expires.
		s.log.Warn("shared_slot_release_failed", "slot", h.name, "err", err)
		return
	}
	s.log.Info("shared_slot_released", "slot", h.name)
}
