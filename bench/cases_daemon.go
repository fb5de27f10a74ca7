package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
)

// The cases of `imagedrop watch`, the daemon nodes run.

// latencyCase is case 6: how soon after a rename into the watched
// directory containerd has the image.
func (b *bench) latencyCase(ctx context.Context, r *caseRun) error {
	var lat []time.Duration
	if b.want("latency") {
		var err error
		if lat, err = b.latency(ctx, r.e); err != nil {
			return err
		}
	}
	r.sec.add(row{num: "6", what: fmt.Sprintf("rename of a %s archive into the watched dir → image in containerd (%d drops, 5 ms poll)", formatBytes(b.cfg.manySize), len(lat)),
		id: lat, target: "≤ 150 ms", absMax: 150 * time.Millisecond})
	return nil
}

// manyCase is case 7: many small archives at once, renamed into the
// daemon's directory or given to `imagedrop import`, against a sequential
// ctr loop.
func (b *bench) manyCase(ctx context.Context, r *caseRun) error {
	e, in := r.e, b.in
	cs := []contender{
		{label: "imagedrop import f1…fN (CLI, 2 workers)", files: in.many, run: b.command(func(ns string) []string {
			return b.imagedropArgs(e, ns, false, in.many...)
		})},
		{label: "imagedrop watch (2 workers), rename all in", files: in.many, run: func(ctx context.Context, ns string) (sample, error) {
			return b.watchMany(ctx, e, ns)
		}},
		{label: "sequential " + e.ctrLocalLabel() + " --no-unpack loop", files: in.many, run: b.command(func(ns string) []string {
			ctr := b.ctrArgs(e, ns, true, false, "$f")
			for i := range ctr[:len(ctr)-1] {
				ctr[i] = quote(ctr[i])
			}
			ctr[len(ctr)-1] = `"$f"`
			return shell(fmt.Sprintf(`for f in %s/*.tar; do %s >/dev/null || exit 1; done`, quote(in.manyDir), strings.Join(ctr, " ")))
		})},
	}
	many, err := b.compare(ctx, e, "many", cs)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("%d archives of %s at once, no unpack", len(in.many), formatBytes(b.cfg.manySize))
	r.sec.add(row{num: "7", what: what + ", daemon", id: walls(many[1]), peer: cs[2].label, peerD: walls(many[2]), target: "≤ 0.5×", ratioMax: 0.5, runs: runsOf(many[1], many[2])})
	r.sec.add(row{num: "7", what: what + ", CLI (imagedrop import, 2 workers)", id: walls(many[0]), peer: cs[2].label, peerD: walls(many[2]), target: "(≤ 0.5×, informative)", ratioMax: 0.5})
	return nil
}

// restartCase is case 9: a daemon restarted with unchanged archives
// recorded, until it is ready.
func (b *bench) restartCase(ctx context.Context, r *caseRun) error {
	var restart []time.Duration
	if b.want("restart") {
		var err error
		if restart, err = b.restart(ctx, r.e); err != nil {
			return err
		}
	}
	r.sec.add(row{num: "9", what: fmt.Sprintf("daemon restart with %d unchanged archives recorded → /readyz 200 (%d restarts)", b.cfg.restartFiles, len(restart)),
		id: restart, target: "≤ 1 s", absMax: time.Second})
	return nil
}

// watchMany starts a daemon on an empty directory, renames every small
// archive in and times until /status shows them all done.
func (b *bench) watchMany(ctx context.Context, e *runtimeEnv, ns string) (sample, error) {
	dir, err := os.MkdirTemp(b.work, "watch-")
	if err != nil {
		return sample{}, err
	}
	defer os.RemoveAll(dir)
	images := filepath.Join(dir, "images")
	if err := os.Mkdir(images, 0o755); err != nil {
		return sample{}, err
	}
	d, err := startDaemon(b.cfg.imagedrop, e.c.Address, ns, images, filepath.Join(dir, "state.json"), filepath.Join(b.work, "daemon.log"))
	if err != nil {
		return sample{}, err
	}
	defer d.stop()
	if err := d.waitReady(ctx, 20*time.Millisecond, time.Minute); err != nil {
		return sample{}, err
	}
	var moved []string
	defer func() {
		for _, name := range moved {
			_ = os.Rename(filepath.Join(images, name), filepath.Join(b.in.manyDir, name))
		}
	}()
	start := time.Now()
	for _, f := range b.in.many {
		name := filepath.Base(f)
		if err := os.Rename(f, filepath.Join(images, name)); err != nil {
			return sample{}, err
		}
		moved = append(moved, name)
	}
	if err := d.waitDone(ctx, len(b.in.many), 30*time.Minute); err != nil {
		return sample{}, err
	}
	return sample{wall: time.Since(start)}, nil
}

// latency runs one daemon and drops the latency archives in one at a time,
// timing each from the rename until containerd has the image.
func (b *bench) latency(ctx context.Context, e *runtimeEnv) ([]time.Duration, error) {
	ns := e.namespace("latency")
	dir, err := os.MkdirTemp(b.work, "latency-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	images := filepath.Join(dir, "images")
	if err := os.Mkdir(images, 0o755); err != nil {
		return nil, err
	}
	d, err := startDaemon(b.cfg.imagedrop, e.c.Address, ns, images, filepath.Join(dir, "state.json"), filepath.Join(b.work, "daemon.log"))
	if err != nil {
		return nil, err
	}
	defer d.stop()
	if err := d.waitReady(ctx, 20*time.Millisecond, time.Minute); err != nil {
		return nil, err
	}
	is := e.client.ImageService()
	nsCtx := namespaces.WithNamespace(ctx, ns)
	var out []time.Duration
	for i, f := range b.in.latency {
		if err := preread(f); err != nil {
			return nil, err
		}
		dst := filepath.Join(images, filepath.Base(f))
		name := "docker.io/" + latencyImage(i)
		start := time.Now()
		if err := os.Rename(f, dst); err != nil {
			return nil, err
		}
		for {
			_, err := is.Get(nsCtx, name)
			if err == nil {
				break
			}
			if !errdefs.IsNotFound(err) {
				return nil, err
			}
			if time.Since(start) > time.Minute {
				return nil, fmt.Errorf("image %s not visible within a minute of the rename", name)
			}
			time.Sleep(5 * time.Millisecond)
		}
		out = append(out, time.Since(start))
		b.logf("  latency  drop %d  %6.1f ms", i+1, float64(time.Since(start).Microseconds())/1000)
		if err := os.Rename(dst, f); err != nil {
			return nil, err
		}
		time.Sleep(100 * time.Millisecond) // let the daemon see the file go before the next drop
	}
	return out, clearNamespace(ctx, e.client, ns)
}

// restart imports the restart archives with a daemon, then restarts it
// several times, timing from process start to /readyz 200.
func (b *bench) restart(ctx context.Context, e *runtimeEnv) ([]time.Duration, error) {
	ns := e.namespace("restart")
	state := filepath.Join(b.work, "restart-state.json")
	defer os.Remove(state)
	logPath := filepath.Join(b.work, "daemon.log")
	d, err := startDaemon(b.cfg.imagedrop, e.c.Address, ns, b.in.restartDir, state, logPath)
	if err != nil {
		return nil, err
	}
	err = d.waitDone(ctx, b.cfg.restartFiles, 30*time.Minute)
	if stopErr := d.stop(); err == nil && stopErr != nil {
		err = fmt.Errorf("stop imagedrop watch: %w", stopErr)
	}
	if err != nil {
		return nil, err
	}
	var out []time.Duration
	for i := range max(b.cfg.latencyRounds/2, 3) {
		start := time.Now()
		d, err := startDaemon(b.cfg.imagedrop, e.c.Address, ns, b.in.restartDir, state, logPath)
		if err != nil {
			return nil, err
		}
		err = d.waitReady(ctx, 5*time.Millisecond, 5*time.Minute)
		took := time.Since(start)
		if stopErr := d.stop(); err == nil && stopErr != nil {
			err = stopErr
		}
		if err != nil {
			return nil, err
		}
		b.logf("  restart  %d  %6.1f ms", i+1, float64(took.Microseconds())/1000)
		out = append(out, took)
	}
	return out, clearNamespace(ctx, e.client, ns)
}

func latencyImage(i int) string { return fmt.Sprintf("bench/latency-%02d:1", i) }
