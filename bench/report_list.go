package main

import (
	"cmp"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
)

// listTable shows the list case at each --pull-concurrency, and what
// containerd's goroutine dumps said of its metadata write lock meanwhile.
func (s *section) listTable() string {
	if len(s.list) == 0 {
		return ""
	}
	var b strings.Builder
	peer := s.list[len(s.list)-1]
	peerWall := median(walls(peer.runs))
	fmt.Fprintf(&b, "\n### Case 10 by --pull-concurrency, and containerd's metadata write lock\n\nEvery row was timed in the same rounds. Lock: %d more runs of each, not timed, while containerd's goroutines are dumped from its debug socket every %s; the share of dumps in which a write transaction of its metadata database (bbolt: one writer at a time, taken for every content commit, label, snapshot and image change) was open (± an approximate 95%% interval from the number of dumps), that share of the probed runs' mean wall time, and how many goroutines were queued for the lock on average. Dumps pause containerd, which slows runs with pulls in parallel.\n\n", probedRuns, lockInterval)
	b.WriteString(listRunsTable(s.list))
	// The floor counts the loop's lock time at its timed speed if probing
	// slowed it: dumps can only lengthen the lock's holds.
	lockFloor := func(share float64) string {
		return ratioString(share * float64(min(peer.probedWall, peerWall)) / float64(peerWall))
	}
	h, m := peer.probe.heldShare(), peer.probe.heldMargin()
	fmt.Fprintf(&b, "\nThe crictl loop, one pull at a time (its probed runs took %s against %s timed), kept the lock held for %s per run: the metadata writes of its pulls, which run one at a time however many pulls overlap. imagedrop's runs make the same pulls through the same CRI, so they cannot take less than about %s of the loop's wall time (the metadata-writer floor; %s–%s from the interval).",
		seconds(peer.probedWall), seconds(peerWall), seconds(peer.lockTime()), lockFloor(h), lockFloor(h-m), lockFloor(h+m))
	def, hasDefault := defaultRun(s.list)
	if hasDefault {
		u := medianCPU(def.runs)
		p := medianCPU(peer.runs)
		fmt.Fprintf(&b, " imagedrop's runs at the default used %s of CPU on the machine (containerd %s, registry %s, imagedrop %s; the loop's containerd and registry used %s and %s): spread over %d cores without a moment's pause, that alone takes %s of the loop's wall time (the CPU floor).",
			seconds(u.machine), seconds(u.containerd), seconds(u.registry), seconds(u.command), seconds(p.containerd), seconds(p.registry),
			runtime.NumCPU(), ratioString(cpuFloor(def.runs, peer.runs)))
	}
	b.WriteString(" A run reaches neither floor unless the lock, or every core, is busy from its first moment to its last.")
	best := bestRun(s.list[:len(s.list)-1])
	fmt.Fprintf(&b, " From one pull at a time to all at once (--pull-concurrency 1 to %d), imagedrop's fastest median was %s, %s of the loop, with --pull-concurrency %d: a client of the CRI chooses only how many pulls overlap, and no choice got closer.\n",
		s.list[len(s.list)-2].concurrency, seconds(median(walls(best.runs))), ratioString(float64(median(walls(best.runs)))/float64(peerWall)), best.concurrency)
	if hasDefault {
		b.WriteString(holderTable(def, peer))
		b.WriteString(memoryControl(def, peer, s.memoryList))
	}
	b.WriteString("\n")
	return b.String()
}

// listRunsTable has a row for each of runs, whose last is the crictl loop.
func listRunsTable(runs []listRun) string {
	var b strings.Builder
	peerWall := median(walls(runs[len(runs)-1].runs))
	b.WriteString("| run | median | ratio to the crictl loop | busy cores | containerd CPU | wall (probed) | lock held | lock held per run | goroutines queued |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range runs {
		m := median(walls(r.runs))
		fmt.Fprintf(&b, "| %s | %s | %s | %.2f | %s | %s | %.0f%% ± %.0f | %s | %.1f |\n", cell(r.label), seconds(m), ratioString(float64(m)/float64(peerWall)),
			medianCores(r.runs), seconds(medianCPU(r.runs).containerd), seconds(r.probedWall), 100*r.probe.heldShare(), 100*r.probe.heldMargin(),
			seconds(r.lockTime()), r.probe.meanQueued())
	}
	return b.String()
}

// memoryControl shows the list case's control, mem (imagedrop's default
// and the crictl loop on a containerd whose root is on a tmpfs), against
// the same two on disk, def and peer.
func memoryControl(def, peer listRun, mem []listRun) string {
	memDef, ok := defaultRun(mem)
	if !ok {
		return ""
	}
	memPeer := mem[len(mem)-1]
	ratio := func(id, p listRun) float64 {
		return float64(median(walls(id.runs))) / float64(median(walls(p.runs)))
	}
	var b strings.Builder
	b.WriteString("\nControl: the same list, clients and registry, against a second containerd from the same binary whose root and state are on a tmpfs (`-memory-dir`), where fsync returns without waiting for the disk; timed and probed the same way, in rounds of their own.\n\n")
	b.WriteString(listRunsTable(mem))
	onDisk, inMemory := ratio(def, peer), ratio(memDef, memPeer)
	fmt.Fprintf(&b, "\nIn memory, imagedrop's default took %s of the loop (on disk %s), and the lock was held in %.0f%% of its dumps (on disk %.0f%%); the loop took %s in memory against %s on disk.",
		ratioString(inMemory), ratioString(onDisk), 100*memDef.probe.heldShare(), 100*def.probe.heldShare(), seconds(median(walls(memPeer.runs))), seconds(median(walls(peer.runs))))
	switch {
	case onDisk > 0.5 && inMemory <= 0.5:
		b.WriteString(" With nothing changed but where containerd writes, the same code meets ≤ 0.5×: on disk, the gap to the target is the time containerd's writes take to reach the disk, flushed mostly with its metadata write lock held, which no client of the CRI can shorten.\n")
	case onDisk > 0.5:
		b.WriteString(" Even without disk flushes imagedrop's default does not reach 0.5× of the loop here: the disk is not the only limit.\n")
	default:
		b.WriteString("\n")
	}
	return b.String()
}

// bestRun is the run of runs with the lowest median wall time.
func bestRun(runs []listRun) listRun {
	return slices.MinFunc(runs, func(a, b listRun) int { return cmp.Compare(median(walls(a.runs)), median(walls(b.runs))) })
}

// holderTable shows which operations held containerd's metadata write
// lock during the probed runs of imagedrop's default and of the peer, as
// shares of their dumps: a profile of the lock.
func holderTable(id, peer listRun) string {
	var b strings.Builder
	b.WriteString("\nWho held the lock, in the probed runs: the share of dumps in which each method of containerd's metadata store had the write transaction open (or its garbage collector the whole database). imagedrop itself writes only imageStore.Update (its pin and labels, once an image); the rest are the pulls' own: fetching (contentStore.Writer opens a blob's ingest, namespacedWriter.Commit commits it, contentStore.Update labels it), unpacking (snapshotter), the image records, the pull's lease; GarbageCollect is containerd's collector, which holds the whole database. Every write transaction ends with an fdatasync of the database; besides, containerd 2.4.2 opens an ingest's files inside the transaction, two of them written with O_SYNC (plugins/content/local/store.go, writeToCompletion), and commits a blob by syncing its file once before the transaction and again, with the rename into the store, inside it (core/metadata/content.go, plugins/content/local/writer.go). So the lock is held for disk flushes, and pulls that write blobs and unpack layers at the same time make each flush longer.\n\n")
	fmt.Fprintf(&b, "| metadata store method | %s | %s |\n|---|---:|---:|\n", cell(id.label), cell(peer.label))
	both := map[string]int{}
	maps.Copy(both, id.probe.holders)
	for k, n := range peer.probe.holders {
		both[k] += n
	}
	keys := slices.SortedFunc(maps.Keys(both), func(a, b string) int { return cmp.Or(both[b]-both[a], strings.Compare(a, b)) })
	share := func(r listRun, k string) string {
		return fmt.Sprintf("%.0f%%", 100*float64(r.probe.holders[k])/float64(max(r.probe.samples, 1)))
	}
	for _, k := range keys {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", k, share(id, k), share(peer, k))
	}
	fmt.Fprintf(&b, "| any | %.0f%% | %.0f%% |\n", 100*id.probe.heldShare(), 100*peer.probe.heldShare())
	return b.String()
}
