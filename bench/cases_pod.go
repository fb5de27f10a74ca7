package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// podRuns are case 14's rounds, for the report's account of where the time
// went.
type podRuns struct {
	drop, ctr []podRun // imagedrop's rounds and ctr's, in the order they ran
	// dropWait are imagedrop's rounds with the Pod created once /status
	// shows the file done.
	dropWait []podRun
}

// podRun is one round of case 14.
type podRun struct {
	total time.Duration // from the rename (imagedrop) or the import's start (ctr) until the Pod is Running
	// imported is, for imagedrop, from the rename until its /status shows
	// the file done; for ctr, the import's wall time.
	imported time.Duration
	// neverPull says kubelet reported the image absent first (an
	// ErrImageNeverPull event) and started the Pod on a later try.
	neverPull bool
}

// podCase is case 14 (issue #23's case 2): on a single-node cluster, from
// the rename of an archive into the images directory `imagedrop watch`
// watches until a Pod of its image (imagePullPolicy Never), created right
// after the rename, is Running; against `ctr -n k8s.io images import` of the
// same archive and the same Pod created once it is done.
func (b *bench) podCase(ctx context.Context, r *caseRun) error {
	if !b.want("pod") {
		return nil
	}
	what := fmt.Sprintf("rename of a %s runnable archive into the node's images dir → Pod (imagePullPolicy Never, created right after) Running", formatBytes(b.cfg.podSize))
	if r.e.major < 2 {
		r.sec.add(row{num: "14", what: what, target: "≤ 1.2×", notYet: "not run: the cluster (kubelet 1.37) runs on containerd 2.x, as in e2e/k8s"})
		return nil
	}
	unlock, err := b.clusterLock(ctx, b.cfg.clusterLock)
	if err != nil {
		return err
	}
	defer unlock()
	b.logf("pod: starting a single-node cluster on containerd %s", r.e.bin)
	n, err := b.startNode(ctx, r.e.bin)
	if err != nil {
		return fmt.Errorf("pod: %w", err)
	}
	runs, res, err := b.podRounds(ctx, n)
	if stopErr := n.stop(err != nil); err == nil && stopErr != nil {
		err = fmt.Errorf("stop the cluster: %w", stopErr)
	}
	if err != nil {
		return fmt.Errorf("pod: %w", err)
	}
	r.sec.add(row{num: "14", what: what, id: walls(res[0]), peer: "ctr -n k8s.io images import, then the same Pod", peerD: walls(res[1]),
		target: "≤ 1.2×", ratioMax: 1.2, runs: runsOf(res[0], res[1])})
	r.sec.add(row{num: "14", what: strings.Replace(what, "created right after", "created once imagedrop's /status shows the file done", 1), id: walls(res[2]),
		peer: "ctr -n k8s.io images import, then the same Pod", peerD: walls(res[1]), target: "≤ 1.2×", ratioMax: 1.2, runs: runsOf(res[2], res[1])})
	r.sec.pod = runs
	return nil
}

// podBench is case 14's rounds on one node.
type podBench struct {
	b       *bench
	n       *podNode
	d       *daemon // imagedrop watch on images, in k8s.io
	images  string  // the watched directory
	dropped bool    // the archive is in images
	pods    int     // Pods created so far
	start   time.Time
	pod     string // the Pod of the round that ran last
	cur     podRun // the round that ran last, as far as its run measured it
	runs    *podRuns
}

// podRounds starts imagedrop watch on the node and runs the rounds:
// imagedrop's and ctr's, alternating, each from a node with neither Pod
// nor image.
func (b *bench) podRounds(ctx context.Context, n *podNode) (*podRuns, [][]sample, error) {
	dir, err := os.MkdirTemp(b.work, "pod-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	p := &podBench{b: b, n: n, images: filepath.Join(dir, "images"), runs: &podRuns{}}
	if err := os.Mkdir(p.images, 0o755); err != nil {
		return nil, nil, err
	}
	p.d, err = startDaemon(b.cfg.imagedrop, n.e.c.Address, criNamespace, p.images, filepath.Join(dir, "state.json"), filepath.Join(b.work, "daemon.log"), "--unpack=true")
	if err != nil {
		return nil, nil, err
	}
	defer p.d.stop()
	if err := p.d.waitReady(ctx, 20*time.Millisecond, time.Minute); err != nil {
		return nil, nil, err
	}
	if err := p.warmUp(ctx); err != nil {
		return nil, nil, fmt.Errorf("first Pod (the sandbox image): %w", err)
	}
	base, err := n.snapshotCount(ctx)
	if err != nil {
		return nil, nil, err
	}
	clean := func(ctx context.Context, _ string) error { return p.clean(ctx, base) }
	cs := []contender{
		{label: "imagedrop watch (unpack, pin): mv into the images dir, Pod created right after", files: []string{b.in.pod}, setup: clean, run: p.drop, verify: p.dropDone},
		{label: "ctr -n k8s.io images import (unpacks), then the Pod", files: []string{b.in.pod}, setup: clean, run: p.ctrThenPod, verify: p.ctrDone},
		{label: "imagedrop watch (unpack, pin): mv into the images dir, Pod created once /status shows it done", files: []string{b.in.pod}, setup: clean, run: p.dropThenPod, verify: p.dropThenPodDone},
	}
	res, err := b.compare(ctx, n.e, "pod", cs)
	if err != nil {
		return nil, nil, err
	}
	return p.runs, res, p.clean(ctx, base)
}

// warmUp waits for the default ServiceAccount that Pods need, and runs a
// first Pod of the sandbox image, so no round pays for the node's first
// Pod (its network, kubelet's first sync).
func (p *podBench) warmUp(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := p.n.k.Kubectl(ctx, nil, "-n", "default", "get", "serviceaccount", "default")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err := p.runPod(ctx, "bench-warm-up", harness.SandboxImages()[0]); err != nil {
		return err
	}
	return p.deletePods(ctx)
}

// drop renames the archive into the watched directory, creates the Pod
// and waits until it is Running.
func (p *podBench) drop(ctx context.Context, _ string) (sample, error) {
	if err := p.dropIn(); err != nil {
		return sample{}, err
	}
	if err := p.runPod(ctx, p.nextPod(), podImage); err != nil {
		return sample{}, err
	}
	p.cur = podRun{total: time.Since(p.start)}
	return sample{wall: p.cur.total}, nil
}

// dropDone records the round: when imagedrop's /status showed the file
// done, and whether kubelet found the image absent first.
//
// The Pod may run before the file is done: the image is there (and the
// CRI unpacks what is not yet) before imagedrop has unpacked every image
// and reported the file.
func (p *podBench) dropDone(ctx context.Context, _ string) error {
	if err := p.d.waitDone(ctx, 1, 2*time.Minute); err != nil {
		return err
	}
	files, err := p.d.files(ctx)
	if err != nil {
		return err
	}
	if len(files) != 1 || files[0].State != "done" {
		return fmt.Errorf("imagedrop /status: %+v, want the archive done", files)
	}
	p.cur.imported = files[0].Updated.Sub(p.start)
	return p.record(ctx, &p.runs.drop, p.cur)
}

// dropIn starts the round's clock and renames the archive into the watched
// directory.
func (p *podBench) dropIn() error {
	p.start = time.Now()
	if err := os.Rename(p.b.in.pod, filepath.Join(p.images, filepath.Base(p.b.in.pod))); err != nil {
		return err
	}
	p.dropped = true
	return nil
}

// dropThenPod renames the archive into the watched directory, waits until
// imagedrop's /status shows it done (polled every 50 ms), then creates the
// Pod and waits until it is Running: the Pod is created once the image is
// there, as ctr's is.
func (p *podBench) dropThenPod(ctx context.Context, _ string) (sample, error) {
	if err := p.dropIn(); err != nil {
		return sample{}, err
	}
	if err := p.d.waitDone(ctx, 1, 2*time.Minute); err != nil {
		return sample{}, err
	}
	imported := time.Since(p.start)
	if err := p.runPod(ctx, p.nextPod(), podImage); err != nil {
		return sample{}, err
	}
	p.cur = podRun{total: time.Since(p.start), imported: imported}
	return sample{wall: p.cur.total}, nil
}

func (p *podBench) dropThenPodDone(ctx context.Context, _ string) error {
	return p.record(ctx, &p.runs.dropWait, p.cur)
}

// ctrThenPod imports the archive with ctr, then creates the Pod and waits
// until it is Running.
func (p *podBench) ctrThenPod(ctx context.Context, _ string) (sample, error) {
	p.start = time.Now()
	s, err := timeCmd(ctx, p.b.work, []string{p.n.e.ctr, "-a", p.n.e.c.Address, "-n", criNamespace, "images", "import", p.b.in.pod})
	if err != nil {
		return sample{}, err
	}
	if err := p.runPod(ctx, p.nextPod(), podImage); err != nil {
		return sample{}, err
	}
	p.cur = podRun{total: time.Since(p.start), imported: s.wall}
	return sample{wall: p.cur.total}, nil
}

func (p *podBench) ctrDone(ctx context.Context, _ string) error {
	return p.record(ctx, &p.runs.ctr, p.cur)
}

// record appends run to runs, with whether kubelet reported the round's
// image absent (ErrImageNeverPull) before it started the Pod.
func (p *podBench) record(ctx context.Context, runs *[]podRun, run podRun) error {
	out, err := p.n.k.Kubectl(ctx, nil, "-n", "default", "get", "events", "--field-selector", "involvedObject.name="+p.pod,
		"-o", `jsonpath={range .items[*]}{.reason}{"\n"}{end}`)
	if err != nil {
		return err
	}
	run.neverPull = slices.Contains(strings.Fields(out), "ErrImageNeverPull")
	*runs = append(*runs, run)
	return nil
}

func (p *podBench) nextPod() string {
	p.pods++
	p.pod = fmt.Sprintf("bench-pod-%d", p.pods)
	return p.pod
}

// runPod creates a Pod called name running image with imagePullPolicy
// Never, and waits (kubectl wait, which watches) until it is Running.
func (p *podBench) runPod(ctx context.Context, name, image string) error {
	spec := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q,"namespace":"default"},
"spec":{"automountServiceAccountToken":false,"enableServiceLinks":false,"terminationGracePeriodSeconds":1,
"containers":[{"name":"app","image":%q,"imagePullPolicy":"Never"}]}}`, name, image)
	if _, err := p.n.k.Kubectl(ctx, []byte(spec), "create", "-f", "-"); err != nil {
		return err
	}
	_, err := p.n.k.Kubectl(ctx, nil, "-n", "default", "wait", "--for=jsonpath={.status.phase}=Running", "pod/"+name, "--timeout=5m")
	return err
}

// deletePods deletes every Pod, waits until they are gone, and removes
// their sandboxes and containers through the CRI (kubelet's own clean-up
// of a deleted Pod's containers waits for its garbage collection).
func (p *podBench) deletePods(ctx context.Context) error {
	if _, err := p.n.k.Kubectl(ctx, nil, "-n", "default", "delete", "pods", "--all", "--wait=true", "--timeout=2m"); err != nil {
		return err
	}
	return p.n.e.c.RemovePodSandboxes(ctx)
}

// clean brings the node back to where every round starts: no Pod, the
// archive out of the watched directory and forgotten by imagedrop, no image
// in k8s.io but the sandbox images, and the base overlayfs snapshots (those
// of the sandbox images) only.
func (p *podBench) clean(ctx context.Context, base int) error {
	if err := p.deletePods(ctx); err != nil {
		return err
	}
	nsCtx := namespaces.WithNamespace(ctx, criNamespace)
	is := p.n.e.client.ImageService()
	if p.dropped {
		if err := os.Rename(filepath.Join(p.images, filepath.Base(p.b.in.pod)), p.b.in.pod); err != nil {
			return err
		}
		p.dropped = false
		// imagedrop forgets the file and unpins its image once idle: wait
		// for both, so that no unpin lands in the next round.
		err := waitUntil(time.Minute, "imagedrop to forget the archive and unpin its image", func() (bool, error) {
			if files, err := p.d.files(ctx); err != nil || len(files) > 0 {
				return false, err
			}
			img, err := is.Get(nsCtx, podImage)
			if errdefs.IsNotFound(err) {
				return true, nil
			}
			return err == nil && img.Labels[criPinnedLabel] != "pinned", err
		})
		if err != nil {
			return err
		}
	}
	imgs, err := is.List(nsCtx)
	if err != nil {
		return err
	}
	imgs = slices.DeleteFunc(imgs, func(img images.Image) bool { return slices.Contains(harness.SandboxImages(), img.Name) })
	for i, img := range imgs {
		var opts []images.DeleteOpt
		if i == len(imgs)-1 {
			opts = append(opts, images.SynchronousDelete())
		}
		if err := is.Delete(nsCtx, img.Name, opts...); err != nil {
			return fmt.Errorf("delete %s: %w", img.Name, err)
		}
	}
	have := 0
	err = waitUntil(30*time.Second, fmt.Sprintf("the sandbox images' %d overlayfs snapshots alone in k8s.io", base), func() (bool, error) {
		have, err = p.n.snapshotCount(ctx)
		return have == base, err
	})
	if err != nil {
		return fmt.Errorf("%w (%d there)", err, have)
	}
	return nil
}

// waitUntil polls cond every 50 ms until it is true, fails or timeout
// passes.
func waitUntil(timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		switch {
		case err != nil:
			return fmt.Errorf("waiting for %s: %w", what, err)
		case ok:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("waiting for %s: not so after %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
