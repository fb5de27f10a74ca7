package importer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
)

// Labels of the leases imports are written under. Only leases that carry
// LabelLease=leaseImport were made by imagedrop, and only those are ever
// released by the cleanup; labelInstance tells the process that made one.
const (
	LabelLease    = "imagedrop.io/lease"
	leaseImport   = "import"
	labelInstance = "imagedrop.io/instance"
	labelPid      = "imagedrop.io/pid"
)

// leaseExpiry bounds how long the content of an interrupted import survives
// if no imagedrop is started again to release its lease. An import still
// running is not affected by its lease's expiry only while it lasts less:
// an hour is a 400 GiB archive at 115 MiB/s.
const leaseExpiry = time.Hour

// leaseCreateTimeout bounds the creation of an import's lease, which does
// not end with the import's context (Importer.lease).
const leaseCreateTimeout = 10 * time.Second

// snapshotResource is the prefix of the type of a lease's snapshot
// resources ("snapshots/overlayfs"); unpack's active snapshots are keyed
// "extract-…".
const (
	snapshotResource = "snapshots/"
	ingestResource   = "ingests"
	extractPrefix    = "extract-"
)

// newInstance returns an ID for this process's Importer, told apart from
// any other by its randomness.
func newInstance() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// leftovers is what an Importer has yet to release: whether the leases of
// earlier imagedrop processes were released, and its own leases whose
// release failed (containerd went away with the import).
type leftovers struct {
	mu      sync.Mutex
	cleaned bool
	own     []leases.Lease
}

// leaseLabels are the labels of an import's lease.
func (im *Importer) leaseLabels() map[string]string {
	return map[string]string{LabelLease: leaseImport, labelInstance: im.instance, labelPid: strconv.Itoa(os.Getpid())}
}

// Cleanup releases what earlier imagedrop processes left in the namespace
// (a crash, a SIGKILL, containerd gone mid-import): every lease labelled as
// imagedrop's import lease that another Importer made, with the ingests and
// the unpack (extract-*) snapshots it holds; and this Importer's own leases
// whose release failed. Nothing without imagedrop's label is touched.
// ImportArchive calls it before its first import, and retries it until it
// succeeds; cmd/imagedrop calls it at start.
func (im *Importer) Cleanup(ctx context.Context) error {
	ctx = im.nsContext(ctx)
	im.left.mu.Lock()
	defer im.left.mu.Unlock()
	var errs []error
	kept := im.left.own[:0]
	for _, l := range im.left.own {
		if err := im.releaseFailed(ctx, l); err != nil {
			errs = append(errs, err)
			kept = append(kept, l)
		}
	}
	im.left.own = kept
	if !im.left.cleaned {
		n, err := im.releaseStale(ctx)
		if err == nil {
			im.left.cleaned = true
			if n > 0 {
				im.log.Info("stale_leases_released", "count", n)
			}
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// releaseStale releases the import leases of other Importers and returns
// how many it released.
func (im *Importer) releaseStale(ctx context.Context) (int, error) {
	ls, err := im.client.LeasesService().List(ctx, fmt.Sprintf("labels.%q==%s", LabelLease, leaseImport))
	if err != nil {
		return 0, fmt.Errorf("list leases: %w", err)
	}
	n := 0
	for _, l := range ls {
		if l.Labels[LabelLease] != leaseImport || l.Labels[labelInstance] == im.instance {
			continue
		}
		if err := im.releaseFailed(ctx, l); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// releaseFailed releases the lease of an import that did not finish: it
// removes the unpack snapshots and aborts the ingests the lease holds, then
// deletes it and waits for the garbage collector, so that nothing it held
// is left.
func (im *Importer) releaseFailed(ctx context.Context, l leases.Lease) error {
	ls := im.client.LeasesService()
	res, err := ls.ListResources(ctx, l)
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("list resources of lease %s: %w", l.ID, err)
	}
	for _, r := range res {
		switch {
		case r.Type == ingestResource:
			if err := im.abortIngest(ctx, r.ID); err != nil {
				return fmt.Errorf("abort ingest %s of lease %s: %w", r.ID, l.ID, err)
			}
		case strings.HasPrefix(r.Type, snapshotResource) && strings.HasPrefix(r.ID, extractPrefix):
			sn := im.client.SnapshotService(strings.TrimPrefix(r.Type, snapshotResource))
			if err := sn.Remove(ctx, r.ID); err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("remove snapshot %s of lease %s: %w", r.ID, l.ID, err)
			}
		}
	}
	if err := ls.Delete(ctx, l, leases.SynchronousDelete); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("release lease %s: %w", l.ID, err)
	}
	return nil
}

// ingestUnlockWait bounds how long an abort is retried for an ingest whose
// write was just cancelled: until containerd's side of the write stream has
// seen the cancellation, the ingest is locked ("unavailable"), or its
// removal races the last write ("directory not empty").
const ingestUnlockWait = 10 * time.Second

// abortIngest aborts the ingest ref, retrying while containerd's writer of
// it may still be ending.
func (im *Importer) abortIngest(ctx context.Context, ref string) error {
	deadline := time.Now().Add(ingestUnlockWait)
	for {
		err := im.client.ContentStore().Abort(ctx, ref)
		switch {
		case err == nil, errdefs.IsNotFound(err):
			return nil
		case time.Now().After(deadline):
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cleanupFirst runs Cleanup before an import while it has not yet
// succeeded or own leases wait for release; a failure is logged, and the
// import goes on (it fails itself if containerd is away).
func (im *Importer) cleanupFirst(ctx context.Context) {
	im.left.mu.Lock()
	pending := !im.left.cleaned || len(im.left.own) > 0
	im.left.mu.Unlock()
	if !pending {
		return
	}
	if err := im.Cleanup(ctx); err != nil {
		im.log.Warn("cleanup_failed", "err", err)
	}
}

// keepForRelease remembers a lease of this Importer whose release failed,
// for the next Cleanup.
func (im *Importer) keepForRelease(l leases.Lease) {
	im.left.mu.Lock()
	defer im.left.mu.Unlock()
	im.left.own = append(im.left.own, l)
}
