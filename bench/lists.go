package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/platforms"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/imagedrop/imagedrop/e2e/harness"
	"github.com/imagedrop/imagedrop/importer"
)

// criNamespace is where the CRI keeps images, whatever the client asks.
const criNamespace = "k8s.io"

// listInput is case 10's input: images pushed to a private registry, and a
// list file naming them.
type listInput struct {
	reg  *harness.Registry
	refs []string
	file string
}

// registryPid is the list case's registry's process, 0 if it does not run.
func (b *bench) registryPid() int {
	if b.list == nil {
		return 0
	}
	return b.list.reg.Pid()
}

// prepareList starts a registry in the work directory, pushes the list's
// images to it and writes the list. Stop the registry when done.
func (b *bench) prepareList() (*listInput, error) {
	dir := filepath.Join(b.work, "registry")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	reg, err := harness.StartRegistry(dir)
	if err != nil {
		return nil, err
	}
	in := &listInput{reg: reg, file: filepath.Join(b.work, "list.txt")}
	var list strings.Builder
	list.WriteString("# case 10 of the benchmark\n")
	for i := range b.cfg.listImages {
		name := fmt.Sprintf("bench/list-%02d:1", i)
		img := harness.RandomImage(name, platforms.DefaultString(), 7000+uint64(i), 2, int(b.cfg.listLayerSize))
		if _, err := reg.PushImage(name, img); err != nil {
			reg.Stop()
			return nil, err
		}
		ref := reg.Host + "/" + name
		in.refs = append(in.refs, ref)
		list.WriteString(ref + "\n")
	}
	if err := os.WriteFile(in.file, []byte(list.String()), 0o644); err != nil {
		reg.Stop()
		return nil, err
	}
	return in, nil
}

// listSweep are the --pull-concurrency values the list case runs
// imagedrop with; the default is among them. The case adds one more: every
// reference of the list at once, the most overlap a CRI client can ask for.
var listSweep = []int{1, 2, 3, 4, 8}

// sweep is listSweep and the number of references n, in order, once each.
func sweep(n int) []int {
	s := append(slices.Clone(listSweep), n)
	slices.Sort(s)
	return slices.Compact(s)
}

// lockInterval is how often probeLock dumps containerd's goroutines, and
// probedRuns how many probed runs each contender of the list case gets.
const (
	lockInterval = 50 * time.Millisecond
	probedRuns   = 3
)

// listRun is one contender of the list case: its timed runs and its
// probed runs.
type listRun struct {
	label       string
	concurrency int  // imagedrop's --pull-concurrency; 0 for the peer
	isDefault   bool // concurrency is imagedrop's default
	runs        []sample
	probedWall  time.Duration // mean over the probed runs
	probe       lockProbe     // all probed runs' dumps
}

// defaultRun is the run of imagedrop's default --pull-concurrency, if the
// sweep had it.
func defaultRun(runs []listRun) (listRun, bool) {
	i := slices.IndexFunc(runs, func(r listRun) bool { return r.isDefault })
	if i < 0 {
		return listRun{}, false
	}
	return runs[i], true
}

// lockTime is how long, per probed run, the dumps say containerd's
// metadata write lock was held.
func (r listRun) lockTime() time.Duration {
	return time.Duration(r.probe.heldShare() * float64(r.probedWall))
}

// imageListCase is case 10: a list of images pulled through the CRI, on
// containerd's disk and, as a control, on a containerd in memory.
func (b *bench) imageListCase(ctx context.Context, r *caseRun) error {
	e, sec := r.e, r.sec
	listWhat := fmt.Sprintf("list of %d images (2 layers of %s each, half random) from a local registry", b.cfg.listImages, formatBytes(b.cfg.listLayerSize))
	listRow := row{num: "10", what: listWhat, peer: "sequential crictl pull loop", target: "≤ 0.5×", ratioMax: 0.5}
	if b.list != nil && b.want("list") {
		runs, err := b.listCase(ctx, e, b.list, sweep(len(b.list.refs)))
		if err != nil {
			return err
		}
		listRow = withDefaultRun(listRow, runs)
		sec.list = runs
	}
	sec.add(listRow)
	if b.list != nil && b.want("list") && b.cfg.memoryDir != "" {
		runs, err := b.listInMemory(ctx, e.bin)
		if err != nil {
			return fmt.Errorf("list case, containerd in memory: %w", err)
		}
		sec.memoryList = runs
		control := withDefaultRun(row{num: "10", what: listWhat, target: "(≤ 0.5×, informative)", ratioMax: 0.5}, runs)
		control.what += "; control: containerd's root and state on tmpfs, no disk flushes"
		sec.add(control)
	}
	return nil
}

// withDefaultRun fills r with the list case's run at imagedrop's default
// --pull-concurrency and the peer's, which is last in runs.
func withDefaultRun(r row, runs []listRun) row {
	peer := runs[len(runs)-1]
	if d, ok := defaultRun(runs); ok {
		r.what += fmt.Sprintf(", --pull-concurrency %d (default)", d.concurrency)
		r.id, r.peer, r.peerD, r.runs = walls(d.runs), peer.label, walls(peer.runs), runsOf(d.runs, peer.runs)
	}
	return r
}

// listCase compares `imagedrop import LIST` (CRI pulls, at each
// --pull-concurrency of concurrencies) with a sequential `crictl pull` loop
// over the same references, the peer, which comes last. Every run starts
// with none of the images nor their blobs in containerd. After the timed
// rounds, each contender runs probedRuns more times with containerd's
// metadata write lock probed.
func (b *bench) listCase(ctx context.Context, e *runtimeEnv, in *listInput, concurrencies []int) ([]listRun, error) {
	conn, err := grpc.NewClient("unix://"+e.c.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cri := runtimeapi.NewImageServiceClient(conn)

	setup := func(ctx context.Context, _ string) error { return e.clearCRIImages(ctx, cri, in.refs) }
	verify := func(ctx context.Context, _ string) error {
		for _, ref := range in.refs {
			st, err := cri.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
			if err != nil {
				return fmt.Errorf("image status %s: %w", ref, err)
			}
			if st.GetImage() == nil {
				return fmt.Errorf("%s was not pulled", ref)
			}
		}
		return nil
	}
	var cs []contender
	out := make([]listRun, 0, len(concurrencies)+1)
	for _, n := range concurrencies {
		argv := []string{b.cfg.imagedrop, "import", "--containerd-address", e.c.Address, "--namespace", criNamespace,
			"--log-level", "warn", fmt.Sprintf("--pull-concurrency=%d", n), in.file}
		label := fmt.Sprintf("imagedrop import --pull-concurrency %d list.txt", n)
		if n == len(in.refs) {
			label += " (all at once)"
		}
		cs = append(cs, contender{label: label, setup: setup, verify: verify, run: b.command(func(string) []string { return argv })})
		out = append(out, listRun{label: label, concurrency: n, isDefault: n == importer.DefaultConfig().PullConcurrency})
	}
	endpoint := "unix://" + e.c.Address
	cs = append(cs, contender{label: "sequential crictl pull loop", setup: setup, verify: verify, run: b.command(func(string) []string {
		return shell(fmt.Sprintf(`for r in %s; do %s -r %s -i %s pull "$r" >/dev/null || exit 1; done`,
			strings.Join(in.refs, " "), quote(b.cfg.crictl), quote(endpoint), quote(endpoint)))
	})})
	out = append(out, listRun{label: cs[len(cs)-1].label})

	res, err := b.compare(ctx, e, "list", cs)
	if err != nil {
		return nil, err
	}
	for i, c := range cs {
		out[i].runs = res[i]
		var wall time.Duration
		for range probedRuns {
			if err := c.setup(ctx, ""); err != nil {
				return nil, err
			}
			var s sample
			p, err := probeLock(ctx, e.c.Debug, lockInterval, func() (err error) { s, err = c.run(ctx, ""); return err })
			if err != nil {
				return nil, fmt.Errorf("list: probed run of %s: %w", c.label, err)
			}
			b.logf("  list     probed   %-45s %8.3fs  lock held in %d of %d dumps, %.1f queued", c.label, s.wall.Seconds(), p.held, p.samples, p.meanQueued())
			wall += s.wall
			out[i].probe = out[i].probe.add(p)
		}
		out[i].probedWall = wall / probedRuns
	}
	return out, e.clearCRIImages(ctx, cri, in.refs)
}

// tmpfsMagic is statfs(2)'s f_type of a tmpfs.
const tmpfsMagic = 0x01021994

// requireTmpfs fails unless dir is on a tmpfs.
func requireTmpfs(dir string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return err
	}
	if st.Type != tmpfsMagic {
		return fmt.Errorf("%s is not a tmpfs (statfs type %#x)", dir, st.Type)
	}
	return nil
}

// listInMemory is the list case's control: imagedrop at its default
// --pull-concurrency and the crictl loop again, on a second containerd
// from the same binary whose root and state are on the tmpfs
// b.cfg.memoryDir, so that no fsync waits for the disk. The pulls, the
// registry and the clients are the same as on disk; what changes is where
// containerd writes, and with it how long its flushes, several of them
// inside its metadata write lock, take.
func (b *bench) listInMemory(ctx context.Context, bin string) ([]listRun, error) {
	e, err := startRuntime(ctx, bin, b.cfg.memoryDir)
	if err != nil {
		return nil, err
	}
	defer e.stop()
	b.logf("list case again on containerd %s with its root in %s", e.c.Version, e.c.Dir)
	return b.listCase(ctx, e, b.list, []int{importer.DefaultConfig().PullConcurrency})
}

// clearCRIImages removes refs through the CRI, so that its image cache
// forgets them too, then collects garbage synchronously and checks that no
// blob is left in the CRI's namespace: the next pull fetches everything.
func (e *runtimeEnv) clearCRIImages(ctx context.Context, cri runtimeapi.ImageServiceClient, refs []string) error {
	for _, ref := range refs {
		if _, err := cri.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
			return fmt.Errorf("remove %s: %w", ref, err)
		}
	}
	ctx = namespaces.WithNamespace(ctx, criNamespace)
	ls := e.client.LeasesService()
	l, err := ls.Create(ctx, leases.WithRandomID())
	if err != nil {
		return err
	}
	// Deleting a lease synchronously runs the garbage collector.
	if err := ls.Delete(ctx, l, leases.SynchronousDelete); err != nil {
		return err
	}
	left := 0
	if err := e.client.ContentStore().Walk(ctx, func(content.Info) error { left++; return nil }); err != nil {
		return err
	}
	if left > 0 {
		return fmt.Errorf("%d blobs left in namespace %s after removing the list's images", left, criNamespace)
	}
	return nil
}
