package importer

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
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
// have expired. A presence also names its process (processID): a process
// in the same pid namespace sees at once that the process is gone (a
// SIGKILL, then a restart), without waiting for its presence to expire.

const (
	labelAlive    = "imagedrop.io/alive"   // on a presence lease: the instance that is alive
	labelProcess  = "imagedrop.io/process" // on a presence lease: its processID
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
			leases.WithLabels(map[string]string{labelAlive: im.instance, labelProcess: im.process}))
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

// aliveInstances returns the instances whose presence has not expired, and
// deletes the presence of processes it sees are gone.
func (im *Importer) aliveInstances(ctx context.Context) (map[string]bool, error) {
	ls, err := im.client.LeasesService().List(ctx, fmt.Sprintf("labels.%q", labelAlive))
	if err != nil {
		return nil, fmt.Errorf("list presence leases: %w", err)
	}
	alive := map[string]bool{}
	now := time.Now()
	for _, l := range ls {
		exp, err := time.Parse(time.RFC3339, l.Labels[labelExpire])
		if processGone(l.Labels[labelProcess]) { // it holds nothing: drop it now
			im.dropPresence(ctx, l)
			continue
		}
		if err == nil && exp.After(now) && l.Labels[labelAlive] != "" {
			alive[l.Labels[labelAlive]] = true
		}
	}
	return alive, nil
}

// processID names this process for its presence: its pid namespace, pid and
// start time ("pid:[4026531836] 1234 98765"), or "" if /proc cannot tell.
func processID() string {
	ns, err := os.Readlink("/proc/self/ns/pid")
	start := startTime("self")
	if err != nil || start == "" {
		return ""
	}
	return fmt.Sprintf("%s %d %s", ns, os.Getpid(), start)
}

// processGone reports that the process a presence names (processID) is in
// this process's pid namespace and has exited: no process has its pid, or
// the one that has it started at another time. It is false whenever it
// cannot tell (another namespace: another container or node).
func processGone(id string) bool {
	f := strings.Fields(id)
	own := strings.Fields(processID())
	if len(f) != 3 || len(own) != 3 || f[0] != own[0] {
		return false
	}
	if _, err := strconv.Atoi(f[1]); err != nil {
		return false
	}
	return startTime(f[1]) != f[2]
}

// startTime is the start time of process pid ("self" or a number) in clock
// ticks since boot, field 22 of /proc/<pid>/stat, or "" if there is none.
func startTime(pid string) string {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return ""
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return ""
	}
	return f[19]
}
