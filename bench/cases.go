package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// contender is one side of a comparison: a tool run on an input.
type contender struct {
	label string
	// files are read into the page cache before every run.
	files []string
	// setup prepares namespace ns before the timed run; optional, untimed.
	setup func(ctx context.Context, ns string) error
	run   func(ctx context.Context, ns string) (sample, error)
	// verify checks namespace ns after the run; optional, untimed.
	verify func(ctx context.Context, ns string) error
}

// runtimeEnv is one containerd the cases run against.
type runtimeEnv struct {
	bin    string // containerd's binary
	c      *harness.Containerd
	client *containerd.Client
	ctr    string // ctr of the same containerd build
	major  int
	seq    int // namespaces made so far
}

func (e *runtimeEnv) namespace(key string) string {
	e.seq++
	return fmt.Sprintf("bench-%s-%d", key, e.seq)
}

// compare runs every contender once per round, in an order that alternates
// between rounds, each in a fresh namespace cleared afterwards.
func (b *bench) compare(ctx context.Context, e *runtimeEnv, key string, cs []contender) ([][]sample, error) {
	out := make([][]sample, len(cs))
	if !b.want(key) {
		return out, nil
	}
	rounds := b.cfg.rounds
	switch key {
	case "list":
		rounds = b.cfg.listRounds
	case "compressed":
		rounds = b.cfg.zRounds
	}
	for round := range rounds {
		for k := range cs {
			i := k
			if round%2 == 1 {
				i = len(cs) - 1 - k
			}
			c := cs[i]
			ns := e.namespace(key)
			if c.setup != nil {
				if err := c.setup(ctx, ns); err != nil {
					return nil, fmt.Errorf("%s: setup of %s: %w", key, c.label, err)
				}
			}
			if err := preread(c.files...); err != nil {
				return nil, err
			}
			// Start with nothing left to write back from earlier runs and
			// their deletions, which would otherwise land in this one.
			syscall.Sync()
			s, err := withCPU(e.c.Pid(), b.registryPid(), func() (sample, error) { return c.run(ctx, ns) })
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", key, c.label, err)
			}
			if c.verify != nil {
				if err := c.verify(ctx, ns); err != nil {
					return nil, fmt.Errorf("%s: %s: %w", key, c.label, err)
				}
			}
			b.logf("  %-8s round %d  %-45s %8.3fs  rss %d MiB  cores %.2f  cpu s: containerd %.2f registry %.2f command %.2f", key, round+1, c.label,
				s.wall.Seconds(), s.rssKiB>>10, s.cores(), s.cpu.containerd.Seconds(), s.cpu.registry.Seconds(), s.cpu.command.Seconds())
			out[i] = append(out[i], s)
			if err := clearNamespace(ctx, e.client, ns); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// command returns a contender run that times argv built for the namespace.
func (b *bench) command(argv func(ns string) []string) func(context.Context, string) (sample, error) {
	return func(ctx context.Context, ns string) (sample, error) {
		return timeCmd(ctx, b.work, argv(ns))
	}
}

func (b *bench) imagedropArgs(e *runtimeEnv, ns string, unpack bool, files ...string) []string {
	return append([]string{b.cfg.imagedrop, "import", "--containerd-address", e.c.Address, "--namespace", ns,
		fmt.Sprintf("--unpack=%t", unpack), "--log-level", "warn"}, files...)
}

// ctrArgs is `ctr images import`; local picks --local on containerd 2.x
// (1.6's ctr always imports locally and has no such flag).
func (b *bench) ctrArgs(e *runtimeEnv, ns string, local, unpack bool, file string) []string {
	args := []string{e.ctr, "-a", e.c.Address, "-n", ns, "images", "import"}
	if local && e.major >= 2 {
		args = append(args, "--local")
	}
	if !unpack {
		args = append(args, "--no-unpack")
	}
	return append(args, file)
}

func (e *runtimeEnv) ctrLocalLabel() string {
	if e.major >= 2 {
		return "ctr import --local"
	}
	return "ctr import (1.6: always local)"
}

func (b *bench) imagedrop(e *runtimeEnv, label string, unpack bool, file string) contender {
	return contender{label: label, files: []string{file}, run: b.command(func(ns string) []string {
		return b.imagedropArgs(e, ns, unpack, file)
	})}
}

func (b *bench) ctrImport(e *runtimeEnv, label string, local, unpack bool, file string) contender {
	return contender{label: label, files: []string{file}, run: b.command(func(ns string) []string {
		return b.ctrArgs(e, ns, local, unpack, file)
	})}
}

// ctrPipe is `DECOMPRESS -dc FILE | ctr images import --local --no-unpack -`.
func (b *bench) ctrPipe(e *runtimeEnv, tool, file string) contender {
	return contender{label: tool + " -dc | " + e.ctrLocalLabel() + " -", files: []string{file}, run: b.command(func(ns string) []string {
		ctr := b.ctrArgs(e, ns, true, false, "-")
		for i := range ctr {
			ctr[i] = quote(ctr[i])
		}
		return shell(tool + " -dc " + quote(file) + " | " + strings.Join(ctr, " "))
	})}
}

// decodedBeside is imagedrop importing plain while the bench process
// decodes compressed beside it, at the pace of containerd's writes, about as
// far ahead of them as imagedrop decodes (its 6 MiB of read-ahead and two
// writes of 4 MiB in flight). It is a control for case 3: the import of the
// same bytes with the same decoding to do on the same cores, done by a
// decoder that shares nothing with the import.
func (b *bench) decodedBeside(e *runtimeEnv, plain, key, compressed string) contender {
	const ahead = 14 << 20
	c := b.imagedrop(e, "imagedrop on the plain .tar, the .tar."+key+" decoded beside it by the bench", false, plain)
	c.files = append(c.files, compressed)
	imp := c.run
	c.run = func(ctx context.Context, ns string) (sample, error) {
		free := make(chan struct{})
		decoded := make(chan error, 1)
		go func() { decoded <- decodeBeside(compressed, e.c.Pid(), ahead, free) }()
		s, err := imp(ctx, ns)
		close(free)
		return s, errors.Join(err, <-decoded)
	}
	return c
}

// floorCommand times a command that needs no containerd.
func (b *bench) floorCommand(label string, files []string, argv []string, after func() error) contender {
	return contender{label: label, files: files, run: func(ctx context.Context, _ string) (sample, error) {
		s, err := timeCmd(ctx, b.work, argv)
		if err == nil && after != nil {
			err = after()
		}
		return s, err
	}}
}

// runsOf pairs imagedrop's runs with the peer's, for the CPU table.
func runsOf(id, peer []sample) [2][]sample { return [2][]sample{id, peer} }

func walls(ss []sample) []time.Duration {
	out := make([]time.Duration, len(ss))
	for i, s := range ss {
		out[i] = s.wall
	}
	return out
}

func maxRSS(ss []sample) int64 {
	var m int64
	for _, s := range ss {
		m = max(m, s.rssKiB)
	}
	return m
}

// runCases runs every case against e and returns the section of the report.
func (b *bench) runCases(ctx context.Context, e *runtimeEnv) (*section, error) {
	sec := &section{containerd: e.c.Version}
	in := b.in
	sizeName := formatBytes(b.cfg.size)

	st, err := os.Stat(in.plain)
	if err != nil {
		return nil, err
	}
	plainSize := st.Size()

	// Floors: the disk and the hash, on the same bytes, in the same run.
	ddOut := filepath.Join(b.work, "dd.out")
	// The compressed inputs, with the decoder imagedrop reads each with.
	compressed := []struct{ key, tool, file, decoder string }{
		{"zst", "zstd", in.zst, "zstd, one goroutine, checksum verified"},
		{"gz", "gzip", in.gz, "gzip"},
	}
	// Each floor: what runs it, and its label in the report.
	type floorRun struct {
		c     contender
		label string
	}
	floorRuns := []floorRun{
		{b.floorCommand("dd bs=4M conv=fsync (plain .tar → disk)", []string{in.plain},
			[]string{"dd", "if=" + in.plain, "of=" + ddOut, "bs=4M", "conv=fsync", "status=none"}, func() error { return os.Remove(ddOut) }),
			"dd bs=4M conv=fsync of the plain .tar to the same disk"},
		{b.floorCommand("sha256sum (plain .tar, page cache)", []string{in.plain}, []string{"sha256sum", in.plain}, nil),
			"sha256sum of the plain .tar from page cache"},
		{contender{label: "Go crypto/sha256 (plain .tar, page cache)", files: []string{in.plain}, run: func(context.Context, string) (sample, error) {
			return hashFile(in.plain)
		}}, "Go crypto/sha256 (what containerd hashes with) of the plain .tar from page cache, in the bench process"},
	}
	for _, z := range compressed {
		floorRuns = append(floorRuns, floorRun{b.floorCommand(z.tool+" -dc .tar."+z.key+" > /dev/null", []string{z.file}, shell(z.tool+" -dc "+quote(z.file)+" > /dev/null"), nil),
			z.tool + " -dc of the .tar." + z.key + " to /dev/null"})
	}
	decodeFloor := map[string]int{} // the floor of decoding each compressed file, by key
	for _, z := range compressed {
		decodeFloor[z.key] = len(floorRuns)
		floorRuns = append(floorRuns, floorRun{contender{label: "Go " + z.tool + " decode (.tar." + z.key + ", page cache)", files: []string{z.file}, run: func(context.Context, string) (sample, error) {
			return decodeFile(z.file)
		}}, "decoding the .tar." + z.key + " in the bench process as imagedrop does (klauspost/compress " + z.decoder + "), to io.Discard"})
	}
	floorCs := make([]contender, len(floorRuns))
	for i, f := range floorRuns {
		floorCs[i] = f.c
	}
	floors, err := b.compare(ctx, e, "floor", floorCs)
	if err != nil {
		return nil, err
	}
	for i, f := range floorRuns {
		sec.floors = append(sec.floors, floorRow{label: f.label, d: walls(floors[i]), bytes: plainSize})
	}

	// 1. Plain archive, no unpack.
	plainCs := []contender{
		b.imagedrop(e, "imagedrop --unpack=false", false, in.plain),
		b.ctrImport(e, e.ctrLocalLabel()+" --no-unpack", true, false, in.plain),
	}
	if e.major >= 2 {
		plainCs = append(plainCs, b.ctrImport(e, "ctr import --no-unpack (transfer service)", false, false, in.plain))
	}
	plain, err := b.compare(ctx, e, "plain", plainCs)
	if err != nil {
		return nil, err
	}
	idPlain := walls(plain[0])
	sec.add(row{num: "1", what: fmt.Sprintf("%s plain .tar, 1 layer, no unpack", sizeName), id: idPlain,
		peer: plainCs[1].label, peerD: walls(plain[1]), target: "≤ 1.0×", ratioMax: 1.0, runs: runsOf(plain[0], plain[1])})
	if e.major >= 2 {
		sec.add(row{num: "1", what: fmt.Sprintf("%s plain .tar, 1 layer, no unpack", sizeName), id: idPlain,
			peer: plainCs[2].label, peerD: walls(plain[2]), target: "≤ 0.5×", ratioMax: 0.5})
	}
	sec.rss = append(sec.rss, rssRow{what: fmt.Sprintf("imagedrop import, %s plain .tar (max of %d runs)", sizeName, len(plain[0])), kib: maxRSS(plain[0]), size: b.cfg.size})

	// 2. Many layers.
	layeredCs := []contender{
		b.imagedrop(e, "imagedrop --unpack=false", false, in.layered),
		b.ctrImport(e, e.ctrLocalLabel()+" --no-unpack", true, false, in.layered),
	}
	layered, err := b.compare(ctx, e, "layers", layeredCs)
	if err != nil {
		return nil, err
	}
	sec.add(row{num: "2", what: fmt.Sprintf("%s .tar, %d layers, no unpack", sizeName, b.cfg.layers), id: walls(layered[0]),
		peer: layeredCs[1].label, peerD: walls(layered[1]), target: "≤ 0.7×", ratioMax: 0.7, runs: runsOf(layered[0], layered[1])})
	sec.rss = append(sec.rss, rssRow{what: fmt.Sprintf("imagedrop import, %s .tar of %d layers, several written at once (max of %d runs)", sizeName, b.cfg.layers, len(layered[0])),
		kib: maxRSS(layered[0]), size: b.cfg.size})

	// 3. Compressed archives, alternating in the same rounds with the
	// plain import they are held to and with the plain import while the
	// bench decodes the compressed file beside it: imagedrop imports of the
	// same bytes only, so that each run follows a run of the same kind
	// (one after a decompressing pipeline ran measurably slower, which only
	// the compressed imports would otherwise pay).
	zCs := []contender{b.imagedrop(e, "imagedrop --unpack=false (plain .tar)", false, in.plain)}
	for _, z := range compressed {
		zCs = append(zCs, b.imagedrop(e, "imagedrop --unpack=false (.tar."+z.key+")", false, z.file))
	}
	for _, z := range compressed {
		zCs = append(zCs, b.decodedBeside(e, in.plain, z.key, z.file))
	}
	zRes, err := b.compare(ctx, e, "compressed", zCs)
	if err != nil {
		return nil, err
	}
	// The pipelines, in rounds of their own with the same imports.
	var pipeCs []contender
	for _, z := range compressed {
		pipeCs = append(pipeCs, b.imagedrop(e, "imagedrop --unpack=false (.tar."+z.key+")", false, z.file), b.ctrPipe(e, z.tool, z.file))
	}
	pipeRes, err := b.compare(ctx, e, "pipes", pipeCs)
	if err != nil {
		return nil, err
	}
	const plainPeer = "imagedrop on the plain .tar (same rounds)"
	sec.compressed.plain = zRes[0]
	for i, z := range compressed {
		id, beside := zRes[1+i], zRes[1+len(compressed)+i]
		what := fmt.Sprintf("%s .tar.%s, no unpack", sizeName, z.key)
		sec.add(row{num: "3", what: what, id: walls(id), peer: plainPeer, peerD: walls(zRes[0]),
			target: "≤ 1.15×", ratioMax: 1.15, runs: runsOf(id, zRes[0])})
		sec.add(row{num: "3", what: what, id: walls(id), peer: "control: " + zCs[1+len(compressed)+i].label, peerD: walls(beside),
			target: "(≤ 1.15×, informative)", ratioMax: 1.15, runs: runsOf(id, beside)})
		pipeID, pipe := pipeRes[2*i], pipeRes[2*i+1]
		sec.add(row{num: "3", what: what + " (pipeline rounds)", id: walls(pipeID), peer: pipeCs[2*i+1].label, peerD: walls(pipe), target: "≤ 0.8×", ratioMax: 0.8})
		sec.rss = append(sec.rss, rssRow{what: fmt.Sprintf("imagedrop import, %s .tar.%s", sizeName, z.key), kib: max(maxRSS(id), maxRSS(pipeID)), size: b.cfg.size})
		if len(id) > 0 {
			sec.compressed.decoded = append(sec.compressed.decoded, decodedRuns{key: z.key, runs: id, beside: beside, floor: median(walls(floors[decodeFloor[z.key]]))})
		}
	}

	// 4. Blobs already present: the same archive under a new name, into a
	// namespace that already holds it (imported there untimed first).
	present := func(ctx context.Context, ns string) error {
		_, err := timeCmd(ctx, b.work, b.imagedropArgs(e, ns, false, in.plain))
		return err
	}
	// Classic docker save (layers named <id>/layer.tar; imagedrop knows
	// their digests from the configs) and docker save ≥ 25 (blobs named by
	// digest): either way imagedrop can tell a blob is present before
	// reading it.
	for _, c := range []struct{ key, file, what string }{
		{"again", in.plainAgain, "classic docker save re-imported under a new name, blobs present"},
		{"again-named", in.blobNamed, "docker save with blobs/sha256 names (docker ≥ 25), blobs present"},
	} {
		cs := []contender{
			b.imagedrop(e, "imagedrop --unpack=false", false, c.file),
			b.ctrImport(e, e.ctrLocalLabel()+" --no-unpack", true, false, c.file),
		}
		for i := range cs {
			cs[i].setup = present
		}
		res, err := b.compare(ctx, e, c.key, cs)
		if err != nil {
			return nil, err
		}
		sec.add(row{num: "4", what: sizeName + " " + c.what, id: walls(res[0]),
			peer: cs[1].label, peerD: walls(res[1]), target: "≤ 0.25×", ratioMax: 0.25})
	}

	// 5. Import including unpack.
	unpackCs := []contender{
		b.imagedrop(e, "imagedrop (unpack)", true, in.plain),
	}
	if e.major >= 2 {
		unpackCs = append(unpackCs, b.ctrImport(e, "ctr import (transfer service, unpacks)", false, true, in.plain))
	} else {
		unpackCs = append(unpackCs, b.ctrImport(e, "ctr import (1.6: local, unpacks)", true, true, in.plain))
	}
	for i := range unpackCs {
		unpackCs[i].verify = e.unpacked
	}
	unpack, err := b.compare(ctx, e, "unpack", unpackCs)
	if err != nil {
		return nil, err
	}
	sec.add(row{num: "5", what: fmt.Sprintf("%s plain .tar, with unpack (overlayfs)", sizeName), id: walls(unpack[0]),
		peer: unpackCs[1].label, peerD: walls(unpack[1]), target: "≤ 0.8×", ratioMax: 0.8})

	// 6. Rename → image visible.
	var lat []time.Duration
	if b.want("latency") {
		if lat, err = b.latency(ctx, e); err != nil {
			return nil, err
		}
	}
	sec.add(row{num: "6", what: fmt.Sprintf("rename of a %s archive into the watched dir → image in containerd (%d drops, 5 ms poll)", formatBytes(b.cfg.manySize), len(lat)),
		id: lat, target: "≤ 150 ms", absMax: 150 * time.Millisecond})

	// 7. Many archives at once.
	manyCs := []contender{
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
	many, err := b.compare(ctx, e, "many", manyCs)
	if err != nil {
		return nil, err
	}
	manyWhat := fmt.Sprintf("%d archives of %s at once, no unpack", len(in.many), formatBytes(b.cfg.manySize))
	sec.add(row{num: "7", what: manyWhat + ", daemon", id: walls(many[1]), peer: manyCs[2].label, peerD: walls(many[2]), target: "≤ 0.5×", ratioMax: 0.5, runs: runsOf(many[1], many[2])})
	sec.add(row{num: "7", what: manyWhat + ", CLI (imagedrop import, 2 workers)", id: walls(many[0]), peer: manyCs[2].label, peerD: walls(many[2]), target: "(≤ 0.5×, informative)", ratioMax: 0.5})

	// 8. Peak RSS.
	if b.in.big != "" && b.want("big") {
		ns := e.namespace("big")
		if err := preread(b.in.big); err != nil {
			return nil, err
		}
		s, err := timeCmd(ctx, b.work, b.imagedropArgs(e, ns, false, b.in.big))
		if err != nil {
			return nil, err
		}
		b.logf("  big      %s  %8.3fs  rss %d MiB", formatBytes(b.cfg.big), s.wall.Seconds(), s.rssKiB>>10)
		if err := clearNamespace(ctx, e.client, ns); err != nil {
			return nil, err
		}
		sec.rss = append(sec.rss, rssRow{what: fmt.Sprintf("imagedrop import, %s plain .tar (1 run, %.1fs)", formatBytes(b.cfg.big), s.wall.Seconds()), kib: s.rssKiB, size: b.cfg.big})
	}
	sec.rssTarget = fmt.Sprintf("peak RSS importing %s (plain .tar)", sizeName)
	sec.add(row{num: "8", what: sec.rssTarget, rssKiB: maxRSS(plain[0]), target: "≤ 64 MiB", rssMax: 64 << 10})

	// 9. Restart with unchanged archives.
	var restart []time.Duration
	if b.want("restart") {
		if restart, err = b.restart(ctx, e); err != nil {
			return nil, err
		}
	}
	sec.add(row{num: "9", what: fmt.Sprintf("daemon restart with %d unchanged archives recorded → /readyz 200 (%d restarts)", b.cfg.restartFiles, len(restart)),
		id: restart, target: "≤ 1 s", absMax: time.Second})

	// 10. Image lists.
	listWhat := fmt.Sprintf("list of %d images (2 layers of %s each, half random) from a local registry", b.cfg.listImages, formatBytes(b.cfg.listLayerSize))
	listRow := row{num: "10", what: listWhat, peer: "sequential crictl pull loop", target: "≤ 0.5×", ratioMax: 0.5}
	if b.list != nil && b.want("list") {
		runs, err := b.listCase(ctx, e, b.list, sweep(len(b.list.refs)))
		if err != nil {
			return nil, err
		}
		listRow = withDefaultRun(listRow, runs)
		sec.list = runs
	}
	sec.add(listRow)
	if b.list != nil && b.want("list") && b.cfg.memoryDir != "" {
		runs, err := b.listInMemory(ctx, e.bin)
		if err != nil {
			return nil, fmt.Errorf("list case, containerd in memory: %w", err)
		}
		sec.memoryList = runs
		r := withDefaultRun(row{num: "10", what: listWhat, target: "(≤ 0.5×, informative)", ratioMax: 0.5}, runs)
		r.what += "; control: containerd's root and state on tmpfs, no disk flushes"
		sec.add(r)
	}
	return sec, nil
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

// unpacked checks that the run left a committed overlayfs snapshot in ns.
func (e *runtimeEnv) unpacked(ctx context.Context, ns string) error {
	n := 0
	err := e.client.SnapshotService("overlayfs").Walk(namespaces.WithNamespace(ctx, ns), func(context.Context, snapshots.Info) error {
		n++
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk snapshots: %w", err)
	}
	if n == 0 {
		return errors.New("no snapshot after an import with unpack")
	}
	return nil
}

func latencyImage(i int) string { return fmt.Sprintf("bench/latency-%02d:1", i) }

var errNoCtr = errors.New("no ctr beside containerd")
