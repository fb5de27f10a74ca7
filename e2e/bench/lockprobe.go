package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// lockProbe is what goroutine dumps of containerd, taken during one run,
// show of its metadata database's write lock (bbolt allows one write
// transaction at a time; containerd takes it for every content commit,
// label, snapshot and image change).
type lockProbe struct {
	samples int
	held    int // samples in which a write transaction was open
	queued  int // goroutines waiting for the lock, summed over samples
}

func (p lockProbe) heldShare() float64 {
	if p.samples == 0 {
		return 0
	}
	return float64(p.held) / float64(p.samples)
}

func (p lockProbe) meanQueued() float64 {
	if p.samples == 0 {
		return 0
	}
	return float64(p.queued) / float64(p.samples)
}

// metadataUpdate is in the stack of every goroutine in, or waiting for, a
// write transaction of containerd's metadata database (1.6 and 2.x).
const metadataUpdate = "metadata.(*DB).Update("

// probeLock runs f while taking containerd's goroutine dumps from its debug
// socket every interval. Each dump stops containerd briefly, so a probed
// run is slower than a timed one: it is never one of the timed samples.
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
			waiting, inTx := scanLock(dump)
			p.samples++
			p.queued += waiting
			if inTx {
				p.held++
			}
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://containerd/debug/pprof/goroutine?debug=2", nil)
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

// scanLock counts the goroutines of a dump waiting for the metadata write
// lock, and reports whether one holds it.
func scanLock(dump string) (waiting int, held bool) {
	for g := range strings.SplitSeq(dump, "\n\n") {
		if !strings.Contains(g, metadataUpdate) {
			continue
		}
		// bbolt's Begin(true) blocks on a sync.Mutex until the writer ends.
		if strings.Contains(g, "bbolt.(*DB).beginRWTx(") && strings.Contains(g, "runtime_SemacquireMutex(") {
			waiting++
		} else {
			held = true
		}
	}
	return waiting, held
}
