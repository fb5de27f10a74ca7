// Package importer puts container images into containerd: it streams image
// archives into the content store, names, labels, pins, retags and unpacks
// the images they hold, and pre-pulls the references named in image lists.
//
// The importer knows nothing of directories or of how files were found; it is
// handed one path at a time.
//
// # Where things are
//
// The files, in the order an archive goes through them:
//
//	importer.go         Config, New, Process (by Kind), Result, Observer
//	kind.go             Kind, KindOf: which file names are archives or lists
//	open.go             opening an untrusted file: beneath its directory, never blocking
//	errors.go           a bad file (permanent) versus a node not ready (transient)
//	archive_import.go   ImportArchive: open, lease, progress, read, collect, store
//	decompress.go       sniffing the compression; decoding ahead of the reader
//	tarwalk.go          the walk of a tar: metadata files, symlinks, blob entries
//	ingest.go           the import of a tar stream, its index, and the blob
//	                    ingester: open, write, commit, reuse of present blobs
//	                    (held on the import's lease)
//	ingest_parallel.go  the import of an uncompressed archive file, several
//	                    blobs at once, each from its own section of the file
//	dockersave.go       the image manifests and index of a docker save
//	complete.go         all or nothing: every image checked complete before
//	                    any is written; the parsers of OCI indexes and manifests
//	limits.go           the bounds on memory (JSON documents, tar entries)
//	blobwrite.go        blobWriter: one write session of containerd's content
//	                    service, writes in flight, and the chunks they use
//	writecodec.go       blob writes encoded without copying their data
//	images.go           creating, labelling, retagging images
//	unpack.go           unpacking them, several at once, each layer chain once
//	space.go            the free-space guard of containerd's root
//	cleanup.go          the labels of import leases; releasing those an
//	                    earlier process, or a failed release, left
//	verify.go           verified imports: Policy, trusted keys, sidecars
//	                    (SidecarOf), a missing sidecar waited for
//	verify_check.go     the check a file's bytes stream through as they are
//	                    read: checksums and detached signatures
//	hashpipe.go         the check's hashes, in a goroutine beside the stream
//	verify_bundle.go    Sigstore bundles, offline, by sigstore-go; streamed Ed25519
//
// And an image list:
//
//	list_parse.go       ParseList: the format of a list file
//	list.go             ImportList: pulls through the CRI, with retries
//	list_auth.go        registry credentials from a docker config.json
//
// # How an archive is imported
//
//  1. Sniff, don't trust the name. The suffix (kind.go) only selects the
//     file; the compression comes from its first bytes (decompress.go), so a
//     zstd stream named .tar.gz imports fine and a file that is no archive
//     fails with "not a tar archive (nor gzip, zstd, lz4 or bzip2
//     compressed tar)".
//  2. Open without trust (open.go). Inside an images directory a file is
//     opened beneath it (openat2 RESOLVE_BENEATH), non-blocking, and checked
//     on the descriptor: only a regular file with one link is read.
//  3. Stream a compressed file. It is read once, through klauspost/compress
//     (gzip, zstd), pierrec/lz4 or the standard library's bzip2, and
//     decompressed in a goroutine of its own a few MiB ahead of the writes
//     to containerd's content store (the read-ahead); nothing is held in
//     memory whole. zstd frames with windows up to --zstd-max-window are
//     accepted; a larger one fails with an error that names the flag.
//  4. Read an uncompressed file in two passes instead (ingest_parallel.go):
//     its tar headers first, seeking over the data, then its blobs, three at
//     a time from their own sections of the file, so that containerd hashes
//     and writes them on several cores.
//  5. Write each blob in 4 MiB chunks, two in flight (blobwrite.go): the
//     next is read and sent while containerd stores the one before. The
//     write requests are encoded around their data by a gRPC codec of this
//     package (writecodec.go), so gRPC sends from imagedrop's own buffer
//     instead of copying it. A blob an interrupted import left half-written
//     is dropped and written anew. In a stream, a blob is committed (synced
//     to disk by containerd) while the next is read, up to four at once.
//  6. Skip what containerd holds (ingest.go). A blob containerd already has,
//     in this namespace or another, is neither written nor read when its
//     digest is known before its data: blobs an OCI layout or a docker
//     save ≥ 25 names by digest (blobs/sha256/…), and the layers of a
//     classic uncompressed docker save, whose digests are their config's
//     diff IDs. Each digest is checked as its blob is written, so an
//     archive that lies fails.
//  7. Both archive formats, walked as containerd's archive.ImportIndex walks
//     them (same images, manifests and digests): docker save archives
//     (dockersave.go; several images in one archive, classic or OCI-style)
//     and OCI image layouts (one manifest or a multi-platform index). Images
//     are named from RepoTags, the io.containerd.image.name annotation or a
//     full reference in org.opencontainers.image.ref.name, normalised
//     (busybox:1.36 becomes docker.io/library/busybox:1.36).
//  8. Label (images.go). Each image gets io.cri-containerd.pinned=pinned
//     (with pinning on), io.cri-containerd.image=managed and
//     imagedrop.io/source=<file name>. Its blobs get
//     containerd.io/distribution.source.<registry>=<repository> as
//     containerd's pull sets them, so a node-local mirror such as Spegel can
//     serve imported images to other nodes: once per blob, with the
//     repositories of every image of the archive that holds it.
//  9. Retag. For each extra registry R, domain/path:tag is also stored as
//     R/path:tag, skipping a registry the image already lives under.
//  10. Unpack the node's platform into the configured snapshotter, so that
//     the CRI does not unpack inside CreateContainer under kubelet's
//     timeout: up to Config.UnpackConcurrency images at once, an image
//     waiting while another extracts a layer chain it shares.
//  11. All or nothing. Content is written under a containerd lease; images
//     are created only once the whole archive has been read, and the lease
//     is released with a synchronous garbage collection, so nothing of a
//     failed file stays behind. Errors that say the file is bad are
//     permanent (errors.go). The importer never modifies, moves or deletes
//     the files it reads.
//
// The tests run against a real containerd started by e2e/harness (see
// main_test.go) and fail if a goroutine is left behind.
package importer
