package main

import (
	"fmt"
	"strings"
	"time"
)

// podMethod is the method of case 14, for the runs that ran it.
func (r *report) podMethod() string {
	c := r.cfg
	if len(c.cases) > 0 && !c.cases["pod"] {
		return ""
	}
	return fmt.Sprintf("- Case 14 (drop to Pod Running, issue #23): a single-node cluster as e2e/k8s starts it (etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubelet from `make setup`, on a containerd of its own from the same binary with its CRI and a bridge network; containerd 2.x only), the sandbox images (e2e/k8s's pause program) imported into `k8s.io`, and `imagedrop watch --unpack=true` (pins, as by default) on an images directory, in `k8s.io`, started once. The image: e2e/k8s's pause program (waits for SIGTERM, so the Pod stays Running) as entrypoint, over two layers of %s of data in all, as one `docker save` archive named `%s`. %d rounds, alternating which contender goes first. imagedrop: the archive is renamed into the watched directory, the Pod (`imagePullPolicy: Never`) created with `kubectl create` right after, and the time taken until `kubectl wait --for=jsonpath={.status.phase}=Running` returns (a watch). ctr: `ctr -n k8s.io images import` of the same archive (unpacks; on 2.x through the transfer service, as typed), then the same Pod, until Running; its time is the import's plus the Pod's. And imagedrop again, the Pod created only once imagedrop's `/status` shows the file done (polled every 50 ms), as a deploy that waits for the image would, and as ctr's Pod is created once its import returns. Before every round, untimed: every Pod deleted (until gone) and its sandbox removed through the CRI, the archive renamed out of the watched directory and imagedrop seen to forget it and unpin its image, every image but the sandbox images deleted (synchronous GC), and k8s.io checked to hold the sandbox images' snapshots only; a first Pod of the sandbox image ran before the rounds, so none pays for the node's first Pod. Each round's Pod has a name of its own; the image keeps its name (kubelet asks the CRI for the image on every try, and holds no record of it). kubectl's own start (about as long for both sides) is in both times.\n",
		formatBytes(c.podSize), podImage, c.podRounds)
}

// account tells where case 14's time went, round by round; "" if the case
// did not run.
func (p *podRuns) account() string {
	if p == nil || len(p.drop) == 0 || len(p.ctr) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n### Case 14: where the time goes\n\n")
	b.WriteString("| round | imagedrop: rename → /status done | rename → Pod Running | kubelet found the image absent first | ctr import | then Pod Running after | ctr total |\n|---|---:|---:|---|---:|---:|---:|\n")
	for i := range max(len(p.drop), len(p.ctr)) {
		cells := []string{fmt.Sprint(i + 1), "", "", "", "", "", ""}
		if i < len(p.drop) {
			d := p.drop[i]
			cells[1], cells[2], cells[3] = seconds(d.imported), seconds(d.total), yesNoPlain(d.neverPull)
		}
		if i < len(p.ctr) {
			c := p.ctr[i]
			cells[4], cells[5], cells[6] = seconds(c.imported), seconds(c.total-c.imported), seconds(c.total)
		}
		fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | "))
	}
	pick := func(runs []podRun, f func(podRun) time.Duration) time.Duration {
		ds := make([]time.Duration, len(runs))
		for i, r := range runs {
			ds[i] = f(r)
		}
		return median(ds)
	}
	never := 0
	for _, d := range p.drop {
		if d.neverPull {
			never++
		}
	}
	fmt.Fprintf(&b, "\nMedians: imagedrop had the image imported, unpacked and pinned %s after the rename, and the Pod was Running %s after it; ctr's import took %s and the Pod was Running %s later, %s in all.",
		seconds(pick(p.drop, func(r podRun) time.Duration { return r.imported })), seconds(pick(p.drop, func(r podRun) time.Duration { return r.total })),
		seconds(pick(p.ctr, func(r podRun) time.Duration { return r.imported })), seconds(pick(p.ctr, func(r podRun) time.Duration { return r.total - r.imported })),
		seconds(pick(p.ctr, func(r podRun) time.Duration { return r.total })))
	fmt.Fprintf(&b, " After imagedrop's /status showed the archive done, the Pod was Running %s later (median).", seconds(pick(p.drop, func(r podRun) time.Duration { return r.total - r.imported })))
	if never > 0 {
		fmt.Fprintf(&b, " In %d of %d imagedrop rounds kubelet had the Pod before the image was there, and reported the image absent (event ErrImageNeverPull) before it started the Pod.", never, len(p.drop))
	}
	late := 0
	for _, d := range p.drop {
		if d.total-d.imported >= 10*time.Second {
			late++
		}
	}
	if late > 0 {
		fmt.Fprintf(&b, " In %d of them the Pod started 10 s or more after the import was done: kubelet syncs a Pod whose sync failed again after a back-off of 10 s with up to 50%% jitter (backOffPeriod, pkg/kubelet/kubelet.go and pod_workers.go of Kubernetes 1.37), unless an event of the Pod's (its sandbox starting) brings the sync sooner; so a Pod created before its image is there starts either soon after the image or only after that back-off.", late)
	}
	if len(p.dropWait) > 0 {
		fmt.Fprintf(&b, " With the Pod created once imagedrop's /status showed the archive done (polled every 50 ms), as ctr's is once its import returns: done %s after the rename, the Pod Running %s later, %s in all (medians).",
			seconds(pick(p.dropWait, func(r podRun) time.Duration { return r.imported })), seconds(pick(p.dropWait, func(r podRun) time.Duration { return r.total - r.imported })),
			seconds(pick(p.dropWait, func(r podRun) time.Duration { return r.total })))
	}
	b.WriteString("\n")
	return b.String()
}

func yesNoPlain(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}
