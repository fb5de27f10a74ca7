package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// lockProbe is what goroutine dumps of containerd, taken during runs,
// show of its metadata database's write lock (bbolt allows one write
// transaction at a time; containerd takes it for every content commit,
// label, snapshot and image change).
type lockProbe struct {
	samples int
	held    int            // samples in which a write transaction was open
	queued  int            // goroutines waiting for the lock, summed over samples
	holders map[string]int // samples in which each operation held it
}

// add sums the dumps of two probes.
func (p lockProbe) add(q lockProbe) lockProbe {
	sum := lockProbe{samples: p.samples + q.samples, held: p.held + q.held, queued: p.queued + q.queued, holders: map[string]int{}}
	for _, h := range []map[string]int{p.holders, q.holders} {
		for k, n := range h {
			sum.holders[k] += n
		}
	}
	return sum
}

func (p lockProbe) heldShare() float64 {
	if p.samples == 0 {
		return 0
	}
	return float64(p.held) / float64(p.samples)
}

// heldMargin is the half-width of an approximate 95% interval of
// heldShare, from the number of dumps (binomial sampling error).
func (p lockProbe) heldMargin() float64 {
	if p.samples == 0 {
		return 0
	}
	h := p.heldShare()
	return 1.96 * math.Sqrt(h*(1-h)/float64(p.samples))
}

func (p lockProbe) meanQueued() float64 {
	if p.samples == 0 {
		return 0
	}
	return float64(p.queued) / float64(p.samples)
}

// metadataUpdate is in the stack of every goroutine in, or waiting for, a
// write transaction of containerd's metadata database (1.6 and 2.x), and
// metadataGC in that of its garbage collector, which holds the database
// for itself from marking to sweeping.
const (
	metadataUpdate = "metadata.(*DB).Update"
	metadataGC     = "metadata.(*DB).GarbageCollect"
)

// probeLock runs f while taking containerd's goroutine profile from its
// debug socket every interval. Each one stops containerd briefly, so a
// probed run is slower than a timed one: it is never one of the timed
// samples. The profile is taken in pprof's grouped text form (debug=1),
// which stops containerd only to collect the stacks, not to print them.
func probeLock(ctx context.Context, debugSock string, interval time.Duration, f func() error) (lockProbe, error) {
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", debugSock)
		},
	}}
	defer hc.CloseIdleConnections()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		p   lockProbe
		err error
	}
	done := make(chan result, 1)
	go func() {
		var p lockProbe
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				done <- result{p, nil}
				return
			case <-t.C:
			}
			dump, err := goroutineDump(ctx, hc)
			if ctx.Err() != nil {
				done <- result{p, nil}
				return
			}
			if err != nil {
				done <- result{p, err}
				return
			}
			waiting, holders := scanLock(dump)
			p = p.add(lockProbe{samples: 1, queued: waiting, held: min(len(holders), 1), holders: present(holders)})
		}
	}()
	runErr := f()
	cancel()
	r := <-done
	if runErr != nil {
		return r.p, runErr
	}
	return r.p, r.err
}

func goroutineDump(ctx context.Context, hc *http.Client) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://containerd/debug/pprof/goroutine?debug=1", nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("containerd goroutine dump: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("containerd goroutine dump: %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// scanLock reads a goroutine profile (debug=1: stacks grouped, each group
// headed "COUNT @ PCs" and one "#\tPC\tFUNC+OFF\tFILE:LINE" line a frame,
// innermost first). It counts the goroutines waiting for the metadata
// write lock and names the operations of those holding it (normally one).
func scanLock(profile string) (waiting int, holders []string) {
	for g := range strings.SplitSeq(profile, "\n\n") {
		if !strings.Contains(g, metadataUpdate) && !strings.Contains(g, metadataGC) {
			continue
		}
		n, frames := parseGroup(g)
		if n == 0 {
			continue
		}
		// Writers wait in bbolt's Begin(true), on a sync.Mutex, for the
		// writer before them, or on containerd's RWMutex while garbage is
		// collected; the collector waits on that RWMutex for the writers.
		if i := frameIndex(frames, metadataUpdate); i >= 0 {
			if frameIndex(frames[:i], "bbolt.(*DB).beginRWTx") >= 0 || (i > 0 && frames[i-1] == "sync.(*RWMutex).RLock") {
				waiting += n
			} else {
				holders = append(holders, holder(frames[i+1:]))
			}
		} else if i := frameIndex(frames, metadataGC); i >= 0 {
			if i > 0 && frames[i-1] == "sync.(*RWMutex).Lock" {
				waiting += n
			} else {
				holders = append(holders, "GarbageCollect")
			}
		}
	}
	return waiting, holders
}

// frameIndex is the index of the first frame whose function name ends in
// fn, or -1.
func frameIndex(frames []string, fn string) int {
	return slices.IndexFunc(frames, func(f string) bool { return strings.HasSuffix(f, fn) })
}

// holder names the operation of a stack, given the frames that called
// metadata.(*DB).Update: the first metadata store method among them. (Who
// asked for it is not told: a pull's fetch and unpack run in goroutines of
// their own, and containerd 1.6's Go keeps only a stack's inner 32 frames.)
func holder(callers []string) string {
	for _, f := range callers {
		pkg, fn, _ := strings.Cut(f[strings.LastIndex(f, "/")+1:], ".")
		if pkg == "metadata" && fn != "update" {
			return strings.NewReplacer("(*", "", ")", "").Replace(fn)
		}
	}
	return "?"
}

// parseGroup returns the goroutine count of a profile's group and its
// frames' function names, innermost first.
func parseGroup(group string) (n int, frames []string) {
	for line := range strings.SplitSeq(group, "\n") {
		if count, _, ok := strings.Cut(line, " @ "); ok {
			if c, err := strconv.Atoi(count); err == nil {
				n = c
			}
			continue
		}
		fields := strings.Split(line, "\t")
		if len(fields) >= 3 && fields[0] == "#" {
			fn, _, _ := strings.Cut(fields[2], "+")
			frames = append(frames, fn)
		}
	}
	return n, frames
}

// present maps each of names to 1: one dump in which it was seen.
func present(names []string) map[string]int {
	m := map[string]int{}
	for _, n := range names {
		m[n] = 1
	}
	return m
}
