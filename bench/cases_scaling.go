package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// scalingCase is case 13, issue #23's case 3: the same image content at
// each of -scaling-sizes (see scalingLayers), imported with unpack by
// `imagedrop import` and by ctr (local, unpacks), beside dd's copy of the
// archive to the same disk. The three run in the same order every round
// (dd, ctr, imagedrop), so imagedrop's runs always follow a ctr run of the
// same size and ctr's a dd run: every run follows the same kind of run.
// Each size's archive is written just before its rounds and deleted after
// them, and a size that would not fit on the disk is skipped, with why.
func (b *bench) scalingCase(ctx context.Context, r *caseRun) error {
	if !b.want("scaling") {
		return nil
	}
	e := r.e
	res := scalingResult{ctrLabel: e.ctrLocalLabel() + " (unpacks)"}
	step := b.cfg.scalingSizes[0]
	for _, size := range b.cfg.scalingSizes {
		run := scalingRun{size: size, layers: len(scalingLayers(size, step))}
		var err error
		if run.skipped, err = b.scalingRoom(e, size); err != nil {
			return err
		}
		if run.skipped != "" {
			b.logf("  scaling  %s: skipped: %s", formatBytes(size), run.skipped)
		} else if err := b.scalingSize(ctx, r, &run, step, res.ctrLabel); err != nil {
			return fmt.Errorf("scaling %s: %w", formatBytes(size), err)
		}
		res.runs = append(res.runs, run)
	}
	r.sec.scaling = res
	for _, x := range res.rows() {
		r.sec.add(x)
	}
	return nil
}

// scalingSize writes the archive of run.size, runs its rounds, adds its
// peak RSS to the report's and deletes the archive.
func (b *bench) scalingSize(ctx context.Context, r *caseRun, run *scalingRun, step int64, ctrLabel string) error {
	e := r.e
	name := formatBytes(run.size)
	path := filepath.Join(b.work, "scaling-"+strings.ReplaceAll(name, " ", "")+".tar")
	defer os.Remove(path)
	b.logf("  scaling  writing the %s archive (%d layers)", name, run.layers)
	sizes := scalingLayers(run.size, step)
	if err := writeDockerSave(path, archiveSpec{name: "bench/scaling:1", seed: 13000, layers: len(sizes), size: run.size, sizes: sizes}); err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	run.bytes = st.Size()
	cs := []contender{
		b.ddCopy("dd bs=4M conv=fsync, "+name+" .tar → disk", path, filepath.Join(b.work, "scaling-dd.out")),
		b.ctrImport(e, ctrLabel+", "+name, true, true, path),
		b.imagedrop(e, "imagedrop import (unpack), "+name, true, path),
	}
	cs[1].verify, cs[2].verify = e.unpacked, e.unpacked
	res, err := b.compareOrdered(ctx, e, "scaling", cs, true)
	if err != nil {
		return err
	}
	run.dd, run.ctr, run.id = res[0], res[1], res[2]
	r.sec.rss = append(r.sec.rss, rssRow{what: fmt.Sprintf("imagedrop import with unpack, %s .tar of %d layers (case 13, max of %d runs)", name, run.layers, len(run.id)),
		kib: maxRSS(run.id), size: run.size})
	return nil
}

// ddCopy times dd writing src to out on the same disk, synced, and removes
// out after: the disk's write rate, a floor.
func (b *bench) ddCopy(label, src, out string) contender {
	return b.floorCommand(label, []string{src}, []string{"dd", "if=" + src, "of=" + out, "bs=4M", "conv=fsync", "status=none"},
		func() error { return os.Remove(out) })
}

// scalingRoom says why the size would not fit on the disks of the work
// directory and containerd's root now, "" if it fits.
func (b *bench) scalingRoom(e *runtimeEnv, size int64) (string, error) {
	work, err := diskOf(b.work)
	if err != nil {
		return "", err
	}
	root, err := diskOf(e.c.Dir)
	if err != nil {
		return "", err
	}
	return scalingShortfall(size, work, root), nil
}

// diskOf is the filesystem dir is on and the bytes free there.
func diskOf(dir string) (disk, error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return disk{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return disk{}, fmt.Errorf("stat %s: %w", dir, err)
	}
	return disk{dev: st.Dev, free: int64(fs.Bavail) * fs.Bsize}, nil
}
