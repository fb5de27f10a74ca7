package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// The k3s labels of an imported image (k3s labelImages): managed by the
// CRI, and pinned, so kubelet's image GC keeps it.
const (
	criImageLabel  = "io.cri-containerd.image"
	criPinnedLabel = "io.cri-containerd.pinned"
)

// k3sSettle is how long k3s's image watcher waits after a file's last
// event before it imports the file.
const k3sSettle = 2 * time.Second

// bundleCase is issue #23's case 1: the bundle, as one file and as one file
// per image, zstd- and gzip-compressed, renamed into a watched directory,
// imported with unpack by imagedrop watch, by the k3s way and by a ctr loop.
// Each variant is a case key: bundle-zst, bundle-zst-each, bundle-gz,
// bundle-gz-each. The contenders run in the same order every round, so each
// follows the same kind of run every time (see the report's method).
func (b *bench) bundleCase(ctx context.Context, r *caseRun) error {
	bf := b.bundle
	if bf == nil {
		return nil
	}
	e := r.e
	for _, v := range bundleVariants() {
		if !b.want(v.key) {
			continue
		}
		files := []string{bf.one[v.comp]}
		if v.each {
			entries, err := os.ReadDir(bf.each[v.comp])
			if err != nil {
				return err
			}
			files = files[:0]
			for _, en := range entries {
				files = append(files, filepath.Join(bf.each[v.comp], en.Name()))
			}
		}
		tool := map[string]string{"zst": "zstd", "gz": "gzip"}[v.comp]
		cs := []contender{
			{label: "imagedrop watch (unpack), rename in", files: files, run: func(ctx context.Context, ns string) (sample, error) {
				return b.watchBundle(ctx, e, ns, files)
			}},
			{label: "k3s way: 2 s settle, one file at a time, " + tool + " -dc | ctr import --all-platforms (unpacks), label pinned", files: files,
				run: func(ctx context.Context, ns string) (sample, error) { return b.k3sWay(ctx, e, ns, tool, files) }},
			{label: "sequential " + tool + " -dc | " + e.ctrLocalLabel() + " loop (unpacks)", files: files, run: b.command(func(ns string) []string {
				ctr := b.ctrArgs(e, ns, true, true, "-")
				for i := range ctr {
					ctr[i] = quote(ctr[i])
				}
				var q []string
				for _, f := range files {
					q = append(q, quote(f))
				}
				return shell(fmt.Sprintf(`for f in %s; do %s -dc "$f" | %s >/dev/null || exit 1; done`, strings.Join(q, " "), tool, strings.Join(ctr, " ")))
			})},
		}
		for i := range cs {
			pinned := i < 2
			cs[i].verify = func(ctx context.Context, ns string) error { return b.bundleDone(ctx, e, ns, pinned) }
		}
		res, err := b.compareOrdered(ctx, e, v.key, cs, true)
		if err != nil {
			return err
		}
		layout := "one file"
		if v.each {
			layout = fmt.Sprintf("%d files, one per image (%s of layers in all)", len(files), formatApprox(bf.perImg))
		}
		what := fmt.Sprintf("bundle of %d images sharing base layers, %s of distinct layers, .tar.%s (%s), %s, with unpack", len(bf.images), formatApprox(bf.bytes), v.comp, b.bundleCompression(v.comp), layout)
		r.sec.add(row{num: "12", what: what, id: walls(res[0]), peer: cs[1].label, peerD: walls(res[1]), target: "≤ 0.5×", ratioMax: 0.5, runs: runsOf(res[0], res[1])})
		r.sec.add(row{num: "12", what: what, id: walls(res[0]), peer: cs[2].label, peerD: walls(res[2]), target: "≤ 0.7×", ratioMax: 0.7, runs: runsOf(res[0], res[2])})
	}
	return nil
}

type bundleVariant struct {
	key, comp string
	each      bool
}

func bundleVariants() []bundleVariant {
	return []bundleVariant{{"bundle-zst", "zst", false}, {"bundle-zst-each", "zst", true}, {"bundle-gz", "gz", false}, {"bundle-gz-each", "gz", true}}
}

func (b *bench) bundleCompression(comp string) string {
	if comp == "zst" {
		return fmt.Sprintf("zstd -%d --long=27", b.cfg.bundleZstd)
	}
	return "gzip level 6"
}

// watchBundle starts a daemon with unpack on an empty directory, renames
// files in and times until /status shows them all done (imported, unpacked,
// pinned).
func (b *bench) watchBundle(ctx context.Context, e *runtimeEnv, ns string, files []string) (sample, error) {
	var s sample
	err := b.inWatchedDir(files, func(images string, rename func() error) error {
		d, err := startDaemon(b.cfg.imagedrop, e.c.Address, ns, images, filepath.Join(filepath.Dir(images), "state.json"), filepath.Join(b.work, "daemon.log"), "--unpack=true")
		if err != nil {
			return err
		}
		defer d.stop()
		if err := d.waitReady(ctx, 20*time.Millisecond, time.Minute); err != nil {
			return err
		}
		start := time.Now()
		if err := rename(); err != nil {
			return err
		}
		if err := d.waitDone(ctx, len(files), time.Hour); err != nil {
			return err
		}
		s.wall = time.Since(start)
		return nil
	})
	return s, err
}

// k3sWay models k3s's image watcher: the files are renamed in, and
// k3sSettle after the last event it takes one file at a time: decompresses
// it into containerd's import (k3s: client.Import with all platforms, in
// process; here ctr, which unpacks as k3s's CRI-ready images are), then
// labels each image it created as managed and pinned. k3s's retag adds a
// name only under --system-default-registry, unset here.
func (b *bench) k3sWay(ctx context.Context, e *runtimeEnv, ns, tool string, files []string) (sample, error) {
	var s sample
	err := b.inWatchedDir(files, func(dir string, rename func() error) error {
		start := time.Now()
		if err := rename(); err != nil {
			return err
		}
		time.Sleep(k3sSettle)
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, en := range entries {
			ctr := b.ctrArgs(e, ns, true, true, "-")
			ctr = append(ctr[:len(ctr)-1], "--all-platforms", "-")
			for i := range ctr {
				ctr[i] = quote(ctr[i])
			}
			if _, err := timeCmd(ctx, b.work, shell(tool+" -dc "+quote(filepath.Join(dir, en.Name()))+" | "+strings.Join(ctr, " ")+" >/dev/null")); err != nil {
				return err
			}
			if err := pinAll(ctx, e.client, ns); err != nil {
				return err
			}
		}
		s.wall = time.Since(start)
		return nil
	})
	return s, err
}

// inWatchedDir makes an empty images directory and calls f with it and a
// function that renames files into it; they are renamed back after f.
func (b *bench) inWatchedDir(files []string, f func(dir string, rename func() error) error) error {
	dir, err := os.MkdirTemp(b.work, "watch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	images := filepath.Join(dir, "images")
	if err := os.Mkdir(images, 0o755); err != nil {
		return err
	}
	var moved []string
	defer func() {
		for _, src := range moved {
			_ = os.Rename(filepath.Join(images, filepath.Base(src)), src)
		}
	}()
	return f(images, func() error {
		for _, src := range files {
			if err := os.Rename(src, filepath.Join(images, filepath.Base(src))); err != nil {
				return err
			}
			moved = append(moved, src)
		}
		return nil
	})
}

// pinAll labels every image of ns not yet pinned as k3s does, one update
// per image.
func pinAll(ctx context.Context, client *containerd.Client, ns string) error {
	ctx = namespaces.WithNamespace(ctx, ns)
	is := client.ImageService()
	imgs, err := is.List(ctx)
	if err != nil {
		return err
	}
	for _, img := range imgs {
		if img.Labels[criPinnedLabel] == "pinned" {
			continue
		}
		if img.Labels == nil {
			img.Labels = map[string]string{}
		}
		img.Labels[criImageLabel], img.Labels[criPinnedLabel] = "managed", "pinned"
		if _, err := is.Update(ctx, img, "labels."+criImageLabel, "labels."+criPinnedLabel); err != nil {
			return fmt.Errorf("pin %s: %w", img.Name, err)
		}
	}
	return nil
}

// bundleDone checks that ns holds every image of the bundle, unpacked into
// overlayfs, and (pinned) each pinned.
func (b *bench) bundleDone(ctx context.Context, e *runtimeEnv, ns string, pinned bool) error {
	ctx = namespaces.WithNamespace(ctx, ns)
	imgs, err := e.client.ImageService().List(ctx)
	if err != nil {
		return err
	}
	var names []string
	for _, img := range imgs {
		names = append(names, img.Name)
		if pinned && img.Labels[criPinnedLabel] != "pinned" {
			return fmt.Errorf("%s not pinned", img.Name)
		}
		ok, err := containerd.NewImage(e.client, img).IsUnpacked(ctx, "overlayfs")
		if err != nil {
			return fmt.Errorf("%s: %w", img.Name, err)
		}
		if !ok {
			return fmt.Errorf("%s not unpacked", img.Name)
		}
	}
	for _, img := range b.bundle.images {
		if !slices.Contains(names, "docker.io/"+img.name) {
			return fmt.Errorf("no image %s after the run (have %d images)", img.name, len(names))
		}
	}
	return nil
}

// formatApprox is a size to two decimals of its unit, for sizes that are
// not whole.
func formatApprox(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}
