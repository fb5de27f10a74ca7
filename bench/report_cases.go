package main

import (
	"fmt"
	"strings"
)

// casesMethod is the method of cases 11 (verified imports) and 12 (the
// bundle), for the runs that ran them.
func (r *report) casesMethod() string {
	c := r.cfg
	var out string
	if len(c.cases) == 0 || c.cases["verify"] {
		out += "- Case 11 (verified imports, issue #24): the plain .tar and the .tar.zst, each signed into a `.sig` sidecar (base64 of an ASN.1 ECDSA P-256 signature of the SHA-256, as `cosign sign-blob --key` writes it) by a key the bench generates, imported by `imagedrop import --verify signature --verify-key KEY` and by the same import with verification off, alternating in the same rounds, the rounds of the .tar first, then those of the .tar.zst: every run follows an import of the same file, verified or not.\n"
	}
	for _, v := range bundleVariants() {
		if len(c.cases) == 0 || c.cases[v.key] {
			out += fmt.Sprintf("- Case 12 (an air-gap bundle, issue #23): %d images, %s of distinct layer data: three base layers (6, 4 and 3%%) under half, a quarter and a quarter of the images, a runtime layer (2%%) under every other image, a large layer of its own (9%%) under every tenth, and 2–4 small layers of each image's own (the rest). As one `docker save` of every image (each layer once) and as one archive per image (each with its base layers), compressed with `zstd -%d --long=27` and gzip (level 6). Each run renames the file(s) into an empty directory: `imagedrop watch` (with unpack; timed until `/status` shows every file done, polled every 50 ms; then checked: every image unpacked into overlayfs and pinned); the k3s way (k3s's image watcher modelled: %s after the last rename, one file at a time, `DECOMPRESS -dc FILE | ctr images import --all-platforms` with unpack (`--local` on 2.x, as k3s's in-process client import), then each new image labelled `%s=managed` and `%s=pinned` through the image service; k3s's retag only adds names under `--system-default-registry`, unset here); and a sequential loop of `DECOMPRESS -dc FILE | ctr images import` (local, unpacks). The contenders run in the same order every round (imagedrop, the k3s way, the ctr loop), %d rounds: imagedrop's runs always follow a ctr loop run (the first: whatever ran before), the k3s way's an imagedrop run, the ctr loop's a k3s-way run.\n",
				c.bundleImages, formatBytes(c.bundleSize), c.bundleZstd, k3sSettle, criImageLabel, criPinnedLabel, c.bundleRounds)
			break
		}
	}
	if len(c.cases) == 0 || c.cases["scaling"] {
		sizes := make([]string, len(c.scalingSizes))
		for i, n := range c.scalingSizes {
			sizes[i] = formatBytes(n)
		}
		out += fmt.Sprintf("- Case 13 (scaling, issue #23): one `docker save` image at each of %s, the same content scaled: the smallest is %d layers (each half random, half repeated text), a size n times it n such steps of layers, so only the size (and with it the layer count) changes. Each size's archive is written just before its runs and deleted after them; a size is skipped, and the report says why, if its archive, content and snapshots (about 3× its size, +5%% +1 GiB) would not fit on the disk then. At each size, in rounds (%d), in the same order every round: dd's copy of the archive to the same disk (the floor), `ctr images import` (local, unpacks) and `imagedrop import` with unpack: imagedrop's runs always follow a ctr run of the same size, ctr's a dd run. Seconds per GiB and imagedrop's peak RSS are compared with the smallest size's; an archive larger than about half the machine's memory may not stay in the page cache through its runs, as the import writes twice its size.\n",
			strings.Join(sizes, ", "), len(scalingMix), c.scalingRounds)
	}
	return out + r.podMethod()
}
