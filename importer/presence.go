package importer

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
)

// Presence. Cleanup releases the import leases of imagedrop processes that
// are gone, never those of one still running in the same namespace (an
// `imagedrop import` beside the DaemonSet's `imagedrop watch`, or an old pod
// still in its shutdown grace beside the new one). A process shows it is
// alive by holding a presence lease, which expires presenceTTL after it was
// made and which Live makes anew every presenceRenew. The leases of a
// process that looked alive are looked at again once its presence would
// have expired.

const (
	labelAlive    = "imagedrop.io/alive" // on a presence lease: the instance that is alive
	labelExpire   = "containerd.io/gc.expire"
	presenceTTL   = 2 * time.Minute
	presenceRenew = presenceTTL / 4
)

// Live shows that this Importer is alive until ctx is done, so that the
// Cleanup of other imagedrop processes spares its imports, and runs the
// Cleanup that had to spare leases again once their owner's presence has
// expired. It returns nil when ctx is done, after removing its presence.
// cmd/imagedrop runs it for as long as the process imports.
func (im *Importer) Live(ctx context.Context) error {
	ctx = im.nsContext(ctx)
	var prev leases.Lease
	t := time.NewTicker(presenceRenew)
	defer t.Stop()
	for seq := 0; ; seq++ {
		l, err := im.client.LeasesService().Create(ctx,
			leases.WithID(fmt.Sprintf("imagedrop-alive-%s-%d", im.instance, seq)),
			leases.WithExpiration(presenceTTL),
			leases.WithLabels(map[string]string{labelAlive: im.instance}))
		switch {
		case err != nil && ctx.Err() == nil:
			im.log.Warn("presence_failed", "err", err, "retry_in", presenceRenew)
		case err == nil:
			im.dropPresence(ctx, prev)
			prev = l
		}
		im.cleanupFirst(ctx) // the leases it spared, once their owner is gone
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			im.dropPresence(dctx, prev)
			return nil
		case <-t.C:
		}
	}
}

// dropPresence deletes a presence lease, if l is one.
func (im *Importer) dropPresence(ctx context.Context, l leases.Lease) {
	if l.ID == "" {
		return
	}
	if err := im.client.LeasesService().Delete(ctx, l); err != nil && !errdefs.IsNotFound(err) {
		im.log.Debug("presence_delete_failed", "lease", l.ID, "err", err)
	}
}

// aliveInstances returns the instances whose presence has not expired.
func (im *Importer) aliveInstances(ctx context.Context) (map[string]bool, error) {
	ls, err := im.client.LeasesService().List(ctx, fmt.Sprintf("labels.%q", labelAlive))
	if err != nil {
		return nil, fmt.Errorf("list presence leases: %w", err)
	}
	alive := map[string]bool{}
	now := time.Now()
	for _, l := range ls {
		exp, err := time.Parse(time.RFC3339, l.Labels[labelExpire])
		if err == nil && exp.After(now) && l.Labels[labelAlive] != "" {
			alive[l.Labels[labelAlive]] = true
		}
	}
	return alive, nil
}
