package main

import (
	"fmt"
	"strings"
	"time"
)

// tables shows case 13 at every size: imagedrop's seconds per GiB and peak
// RSS as ratios to the smallest size's, beside ctr's and the disk's (dd) in
// the same rounds, then every run and its CPU time; "" if the case did not
// run.
func (res scalingResult) tables() string {
	if len(res.runs) == 0 {
		return ""
	}
	base := res.runs[0]
	if base.skipped != "" {
		return fmt.Sprintf("\n### Case 13: scaling with size\n\nNot run: at %s, the smallest size, it %s.\n", formatBytes(base.size), base.skipped)
	}
	var b strings.Builder
	pcts := make([]string, len(scalingMix))
	for i, p := range scalingMix {
		pcts[i] = fmt.Sprint(p)
	}
	fmt.Fprintf(&b, "\n### Case 13: scaling with size\n\nThe same image content at each size: at the smallest, %s, one image of %d layers (%s %% of it); a size n times that is n such steps of layers, each layer written from a seed of its own, so the layer count grows with the size and nothing else changes. Seconds per GiB: the median wall time over the archive's size; ratios are to the %s run's. %s and dd's copy of the archive to the same disk ran in the same rounds, so a change they show too is the machine's, not imagedrop's.\n\n",
		formatBytes(base.size), base.layers, strings.Join(pcts, ", "), formatBytes(base.size), res.ctrLabel)
	// timeOf is the median seconds per GiB of ss and its ratio to baseSS's.
	timeOf := func(ss []sample, bytes int64, baseSS []sample) (time.Duration, float64) {
		d := median(perGiBs(ss, bytes))
		return d, float64(d) / float64(median(perGiBs(baseSS, base.bytes)))
	}
	fmt.Fprintf(&b, "| size | layers | archive | imagedrop median | imagedrop s/GiB | ratio | within ±%.0f %%? | %s median | s/GiB | ratio | dd write of the archive | dd s/GiB ratio |\n|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|\n",
		100*scalingTimeBand, cell(res.ctrLabel))
	var skipped []string
	for _, x := range res.runs {
		if x.skipped != "" {
			skipped = append(skipped, fmt.Sprintf("- %s (%d layers): skipped: it %s.\n", formatBytes(x.size), x.layers, x.skipped))
			continue
		}
		idS, idR := timeOf(x.id, x.bytes, base.id)
		ctrS, ctrR := timeOf(x.ctr, x.bytes, base.ctr)
		_, ddR := timeOf(x.dd, x.bytes, base.dd)
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", formatBytes(x.size), x.layers, formatApprox(x.bytes),
			seconds(median(walls(x.id))), seconds(idS), ratioString(idR), yesNo(withinBand(idR, scalingTimeBand)), seconds(median(walls(x.ctr))),
			seconds(ctrS), ratioString(ctrR), throughput(x.bytes, median(walls(x.dd))), ratioString(ddR))
	}
	fmt.Fprintf(&b, "\nPeak RSS: the largest of each size's runs (`/usr/bin/time -v`), of the command itself; containerd's is not counted.\n\n| size | imagedrop peak RSS | ratio | within ±%.0f %%? | ctr peak RSS | ratio |\n|---|---:|---:|---|---:|---:|\n", 100*scalingRSSBand)
	for _, x := range res.runs {
		if x.skipped != "" {
			continue
		}
		id, ctr := float64(maxRSS(x.id))/float64(maxRSS(base.id)), float64(maxRSS(x.ctr))/float64(maxRSS(base.ctr))
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", formatBytes(x.size), mib(maxRSS(x.id)), ratioString(id), yesNo(withinBand(id, scalingRSSBand)),
			mib(maxRSS(x.ctr)), ratioString(ctr))
	}
	if len(skipped) > 0 {
		b.WriteString("\n" + strings.Join(skipped, ""))
	}
	b.WriteString(res.runsTable())
	return b.String()
}

// runsTable lists every run of case 13 in seconds, with the medians of its
// CPU time (user + system) on the whole machine, by containerd and by the
// command, and the machine's per GiB.
func (res scalingResult) runsTable() string {
	var b strings.Builder
	b.WriteString("\nRuns and CPU time per run (medians) of case 13: busy cores are the CPUs the whole machine kept busy during a run.\n\n| size | runs of | runs (s) | busy cores | machine CPU | containerd | command | machine CPU per GiB |\n|---|---|---|---:|---:|---:|---:|---:|\n")
	for _, x := range res.runs {
		if x.skipped != "" {
			continue
		}
		for _, c := range []struct {
			label string
			runs  []sample
		}{{"imagedrop import (unpack)", x.id}, {res.ctrLabel, x.ctr}, {"dd bs=4M conv=fsync", x.dd}} {
			u := medianCPU(c.runs)
			fmt.Fprintf(&b, "| %s | %s | %s | %.2f | %s | %s | %s | %s |\n", formatBytes(x.size), cell(c.label), list(walls(c.runs)), medianCores(c.runs),
				seconds(u.machine), seconds(u.containerd), seconds(u.command), seconds(perGiB(u.machine, x.bytes)))
		}
	}
	return b.String()
}
