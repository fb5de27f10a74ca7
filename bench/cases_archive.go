package main

import (
	"context"
	"fmt"
)

// The cases of one archive imported by `imagedrop import`, beside ctr.

// plainCase is case 1: the plain archive, no unpack, against ctr importing
// locally and, on containerd 2.x, through the transfer service.
func (b *bench) plainCase(ctx context.Context, r *caseRun) error {
	e, in := r.e, b.in
	cs := []contender{
		b.imagedrop(e, "imagedrop --unpack=false", false, in.plain),
		b.ctrImport(e, e.ctrLocalLabel()+" --no-unpack", true, false, in.plain),
	}
	if e.major >= 2 {
		cs = append(cs, b.ctrImport(e, "ctr import --no-unpack (transfer service)", false, false, in.plain))
	}
	plain, err := b.compare(ctx, e, "plain", cs)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("%s plain .tar, 1 layer, no unpack", r.sizeName)
	id := walls(plain[0])
	r.sec.add(row{num: "1", what: what, id: id,
		peer: cs[1].label, peerD: walls(plain[1]), target: "≤ 1.0×", ratioMax: 1.0, runs: runsOf(plain[0], plain[1])})
	if e.major >= 2 {
		r.sec.add(row{num: "1", what: what, id: id,
			peer: cs[2].label, peerD: walls(plain[2]), target: "≤ 0.5×", ratioMax: 0.5})
	}
	r.sec.rss = append(r.sec.rss, rssRow{what: fmt.Sprintf("imagedrop import, %s plain .tar (max of %d runs)", r.sizeName, len(plain[0])), kib: maxRSS(plain[0]), size: b.cfg.size})
	r.plainRuns = plain[0]
	return nil
}

// layersCase is case 2: an archive of many layers, no unpack.
func (b *bench) layersCase(ctx context.Context, r *caseRun) error {
	e, in := r.e, b.in
	cs := []contender{
		b.imagedrop(e, "imagedrop --unpack=false", false, in.layered),
		b.ctrImport(e, e.ctrLocalLabel()+" --no-unpack", true, false, in.layered),
	}
	layered, err := b.compare(ctx, e, "layers", cs)
	if err != nil {
		return err
	}
	r.sec.add(row{num: "2", what: fmt.Sprintf("%s .tar, %d layers, no unpack", r.sizeName, b.cfg.layers), id: walls(layered[0]),
		peer: cs[1].label, peerD: walls(layered[1]), target: "≤ 0.7×", ratioMax: 0.7, runs: runsOf(layered[0], layered[1])})
	r.sec.rss = append(r.sec.rss, rssRow{what: fmt.Sprintf("imagedrop import, %s .tar of %d layers, several written at once (max of %d runs)", r.sizeName, b.cfg.layers, len(layered[0])),
		kib: maxRSS(layered[0]), size: b.cfg.size})
	return nil
}

// compressedCase is case 3: the compressed archives, alternating in the
// same rounds with the plain import they are held to and with the plain
// import while the bench decodes the compressed file beside it: imagedrop
// imports of the same bytes only, so that each run follows a run of the
// same kind (one after a decompressing pipeline ran measurably slower,
// which only the compressed imports would otherwise pay). The pipelines
// they replace run in rounds of their own with the same imports.
func (b *bench) compressedCase(ctx context.Context, r *caseRun) error {
	e, sec, compressed := r.e, r.sec, b.compressedInputs()
	zCs := []contender{b.imagedrop(e, "imagedrop --unpack=false (plain .tar)", false, b.in.plain)}
	for _, z := range compressed {
		zCs = append(zCs, b.imagedrop(e, "imagedrop --unpack=false (.tar."+z.key+")", false, z.file))
	}
	for _, z := range compressed {
		zCs = append(zCs, b.decodedBeside(e, b.in.plain, z.key, z.file))
	}
	zRes, err := b.compare(ctx, e, "compressed", zCs)
	if err != nil {
		return err
	}
	var pipeCs []contender
	for _, z := range compressed {
		pipeCs = append(pipeCs, b.imagedrop(e, "imagedrop --unpack=false (.tar."+z.key+")", false, z.file), b.ctrPipe(e, z.tool, z.file))
	}
	pipeRes, err := b.compare(ctx, e, "pipes", pipeCs)
	if err != nil {
		return err
	}
	const plainPeer = "imagedrop on the plain .tar (same rounds)"
	sec.compressed.plain = zRes[0]
	for i, z := range compressed {
		id, beside := zRes[1+i], zRes[1+len(compressed)+i]
		what := fmt.Sprintf("%s .tar.%s, no unpack", r.sizeName, z.key)
		sec.add(row{num: "3", what: what, id: walls(id), peer: plainPeer, peerD: walls(zRes[0]),
			target: "≤ 1.15×", ratioMax: 1.15, runs: runsOf(id, zRes[0])})
		sec.add(row{num: "3", what: what, id: walls(id), peer: "control: " + zCs[1+len(compressed)+i].label, peerD: walls(beside),
			target: "(≤ 1.15×, informative)", ratioMax: 1.15, runs: runsOf(id, beside)})
		pipeID, pipe := pipeRes[2*i], pipeRes[2*i+1]
		sec.add(row{num: "3", what: what + " (pipeline rounds)", id: walls(pipeID), peer: pipeCs[2*i+1].label, peerD: walls(pipe), target: "≤ 0.8×", ratioMax: 0.8})
		sec.rss = append(sec.rss, rssRow{what: fmt.Sprintf("imagedrop import, %s .tar.%s", r.sizeName, z.key), kib: max(maxRSS(id), maxRSS(pipeID)), size: b.cfg.size})
		if len(id) > 0 {
			sec.compressed.decoded = append(sec.compressed.decoded, decodedRuns{key: z.key, runs: id, beside: beside, floor: r.decodeFloor[z.key]})
		}
	}
	return nil
}

// presentCase is case 4: blobs already present, the same archive under a
// new name into a namespace that already holds it (imported there untimed
// first), as a classic docker save (layers named <id>/layer.tar; imagedrop
// knows their digests from the configs) and a docker save ≥ 25 (blobs named
// by digest): either way imagedrop can tell a blob is present before
// reading it.
func (b *bench) presentCase(ctx context.Context, r *caseRun) error {
	e := r.e
	present := func(ctx context.Context, ns string) error {
		_, err := timeCmd(ctx, b.work, b.imagedropArgs(e, ns, false, b.in.plain))
		return err
	}
	for _, c := range []struct{ key, file, what string }{
		{"again", b.in.plainAgain, "classic docker save re-imported under a new name, blobs present"},
		{"again-named", b.in.blobNamed, "docker save with blobs/sha256 names (docker ≥ 25), blobs present"},
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
			return err
		}
		r.sec.add(row{num: "4", what: r.sizeName + " " + c.what, id: walls(res[0]),
			peer: cs[1].label, peerD: walls(res[1]), target: "≤ 0.25×", ratioMax: 0.25})
	}
	return nil
}

// unpackCase is case 5: the plain archive imported with unpack, each run
// checked for a snapshot.
func (b *bench) unpackCase(ctx context.Context, r *caseRun) error {
	e := r.e
	cs := []contender{
		b.imagedrop(e, "imagedrop (unpack)", true, b.in.plain),
	}
	if e.major >= 2 {
		cs = append(cs, b.ctrImport(e, "ctr import (transfer service, unpacks)", false, true, b.in.plain))
	} else {
		cs = append(cs, b.ctrImport(e, "ctr import (1.6: local, unpacks)", true, true, b.in.plain))
	}
	for i := range cs {
		cs[i].verify = e.unpacked
	}
	unpack, err := b.compare(ctx, e, "unpack", cs)
	if err != nil {
		return err
	}
	r.sec.add(row{num: "5", what: fmt.Sprintf("%s plain .tar, with unpack (overlayfs)", r.sizeName), id: walls(unpack[0]),
		peer: cs[1].label, peerD: walls(unpack[1]), target: "≤ 0.8×", ratioMax: 0.8})
	return nil
}

// rssCase is case 8: imagedrop's peak RSS importing the plain archive
// (case 1's runs), and once the big archive, whose RSS is reported beside.
func (b *bench) rssCase(ctx context.Context, r *caseRun) error {
	e, sec := r.e, r.sec
	if b.in.big != "" && b.want("big") {
		ns := e.namespace("big")
		if err := preread(b.in.big); err != nil {
			return err
		}
		s, err := timeCmd(ctx, b.work, b.imagedropArgs(e, ns, false, b.in.big))
		if err != nil {
			return err
		}
		b.logf("  big      %s  %8.3fs  rss %d MiB", formatBytes(b.cfg.big), s.wall.Seconds(), s.rssKiB>>10)
		if err := clearNamespace(ctx, e.client, ns); err != nil {
			return err
		}
		sec.rss = append(sec.rss, rssRow{what: fmt.Sprintf("imagedrop import, %s plain .tar (1 run, %.1fs)", formatBytes(b.cfg.big), s.wall.Seconds()), kib: s.rssKiB, size: b.cfg.big})
	}
	sec.rssTarget = fmt.Sprintf("peak RSS importing %s (plain .tar)", r.sizeName)
	sec.add(row{num: "8", what: sec.rssTarget, rssKiB: maxRSS(r.plainRuns), target: "≤ 64 MiB", rssMax: 64 << 10})
	return nil
}
