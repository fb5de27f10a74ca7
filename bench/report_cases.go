package main

import "fmt"

// casesMethod is the method of cases 11 (verified imports) and 12 (the
// bundle), for the runs that ran them.
func (r *report) casesMethod() string {
	c := r.cfg
	var out string
	if len(c.cases) == 0 || c.cases["verify"] {
		out += "- Case 11 (verified imports, issue #24): the plain .tar and the .tar.zst, each signed into a `.sig` sidecar (base64 of an ASN.1 ECDSA P-256 signature of the SHA-256, as `cosign sign-blob --key` writes it) by a key the bench generates, imported by `imagedrop import --verify signature --verify-key KEY` and by the same import with verification off, alternating in the same rounds: imagedrop imports of the same bytes only, so every run follows the same kind of run.\n"
	}
	for _, v := range bundleVariants() {
		if len(c.cases) == 0 || c.cases[v.key] {
			out += fmt.Sprintf("- Case 12 (an air-gap bundle, issue #23): %d images, %s of distinct layer data: three base layers (6, 4 and 3%%) under half, a quarter and a quarter of the images, a runtime layer (2%%) under every other image, a large layer of its own (9%%) under every tenth, and 2–4 small layers of each image's own (the rest). As one `docker save` of every image (each layer once) and as one archive per image (each with its base layers), compressed with `zstd -%d --long=27` and gzip (level 6). Each run renames the file(s) into an empty directory: `imagedrop watch` (with unpack; timed until `/status` shows every file done, polled every 50 ms; then checked: every image unpacked into overlayfs and pinned); the k3s way (k3s's image watcher modelled: %s after the last rename, one file at a time, `DECOMPRESS -dc FILE | ctr images import --all-platforms` with unpack (`--local` on 2.x, as k3s's in-process client import), then each new image labelled `%s=managed` and `%s=pinned` through the image service; k3s's retag only adds names under `--system-default-registry`, unset here); and a sequential loop of `DECOMPRESS -dc FILE | ctr images import` (local, unpacks). The contenders run in the same order every round (imagedrop, the k3s way, the ctr loop), %d rounds: imagedrop's runs always follow a ctr loop run (the first: whatever ran before), the k3s way's an imagedrop run, the ctr loop's a k3s-way run.\n",
				c.bundleImages, formatBytes(c.bundleSize), c.bundleZstd, k3sSettle, criImageLabel, criPinnedLabel, c.bundleRounds)
			break
		}
	}
	return out + r.podMethod()
}
