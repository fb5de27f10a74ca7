package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	coordinationclient "k8s.io/client-go/kubernetes/typed/coordination/v1"

	"github.com/imagedrop/imagedrop/watcher"
)

// serviceAccountNamespace holds the pod's namespace when imagedrop runs in
// a pod.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// sharedConfig is the cluster-wide limit on imports from --rescan-dir
// directories.
type sharedConfig struct {
	slots          int
	leaseNamespace string
	leaseDuration  time.Duration
}

func (c *sharedConfig) register(fs *flag.FlagSet) {
	fs.IntVar(&c.slots, "shared-import-slots", 0, "imports from --rescan-dir directories run at once across the cluster, counted with Leases (0: no limit)")
	fs.StringVar(&c.leaseNamespace, "lease-namespace", "", "`NAMESPACE` of the shared-import Leases (default: the pod's, else imagedrop)")
	fs.DurationVar(&c.leaseDuration, "lease-duration", 30*time.Second, "how long a shared-import slot outlives its holder's last renewal (renewed every third of it)")
}

func (c *sharedConfig) validate() error {
	if c.slots < 0 {
		return fmt.Errorf("--shared-import-slots must not be negative, got %d", c.slots)
	}
	if c.leaseDuration < 3*time.Second {
		return fmt.Errorf("--lease-duration must be at least 3s, got %s", c.leaseDuration)
	}
	return nil
}

// newSharedSlots returns the cluster-wide semaphore of cfg, or nil when the
// limit is off: not asked for, or no Kubernetes API to count with (said in
// the log).
func newSharedSlots(cfg sharedConfig, kube kubeConfig, log *slog.Logger) slots {
	if cfg.slots == 0 {
		return nil
	}
	rc, err := kube.restConfig()
	if err != nil {
		log.Warn("shared_import_limit_off", "reason", "no Kubernetes API access", "err", err)
		return nil
	}
	cs, err := coordinationclient.NewForConfig(rc)
	if err != nil {
		log.Warn("shared_import_limit_off", "reason", "no Kubernetes API access", "err", err)
		return nil
	}
	node, ns := kube.nodeName, cfg.leaseNamespace
	if node == "" {
		if node, err = os.Hostname(); err != nil {
			log.Warn("shared_import_limit_off", "reason", "no node name", "err", err)
			return nil
		}
	}
	if ns == "" {
		ns = "imagedrop"
		if b, err := os.ReadFile(serviceAccountNamespace); err == nil && strings.TrimSpace(string(b)) != "" {
			ns = strings.TrimSpace(string(b))
		}
	}
	s := newLeaseSlots(cs.Leases(ns), node, cfg.slots, cfg.leaseDuration, log)
	log.Info("shared_import_limit_on", "slots", cfg.slots, "node", node, "lease_namespace", ns, "lease_duration", cfg.leaseDuration)
	return s
}

// slots is a cluster-wide counting semaphore.
type slots interface {
	// TryAcquire takes a free slot if there is one; if none is free it
	// returns a nil held, with the error of a try that failed. held ends
	// when ctx ends or the slot is lost; release gives the slot back.
	TryAcquire(ctx context.Context) (held context.Context, release func(), err error)
	// RetryDelay is how long to wait before the next try.
	RetryDelay() time.Duration
}

// waitingForSlot is what a file of a shared directory waits for, in the
// watcher's FileStatus.Waiting.
const waitingForSlot = "a shared-import slot"

// sharedGate makes jobs of files in shared directories hold a slot while
// they import, and keeps what /status shows of them.
type sharedGate struct {
	slots slots
	roots []string // absolute --rescan-dir directories

	mu      sync.Mutex
	imports map[string]*sharedImport // by absolute path
}

// sharedImport is the last or current job of one file of a shared
// directory, in /status.
type sharedImport struct {
	Path string `json:"path"`
	// Waiting since WaitingSince for a slot, with the error of the last
	// try if it failed.
	Waiting      bool      `json:"waiting"`
	WaitingSince time.Time `json:"waiting_since,omitzero"`
	Error        string    `json:"error,omitempty"`
	// AcquiredAt is when the job got its slot; ReleasedAt when it gave it
	// back (zero while it imports).
	AcquiredAt time.Time `json:"acquired_at,omitzero"`
	ReleasedAt time.Time `json:"released_at,omitzero"`
}

func newSharedGate(s slots, rescanDirs []string) (*sharedGate, error) {
	g := &sharedGate{slots: s, imports: map[string]*sharedImport{}}
	for _, d := range rescanDirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("--rescan-dir %q: %w", d, err)
		}
		g.roots = append(g.roots, abs)
	}
	return g, nil
}

// run runs job for f, holding a slot first when f is in a shared directory.
// If no slot is free it returns the watcher's NotYet at once, so that the
// file waits without holding one of the watcher's workers.
func (g *sharedGate) run(ctx context.Context, f watcher.File, job func(context.Context) error) error {
	if g == nil || g.slots == nil || !slices.Contains(g.roots, filepath.Clean(f.Root)) {
		return job(ctx)
	}
	held, release, err := g.slots.TryAcquire(ctx)
	if held == nil {
		if ctx.Err() != nil {
			return fmt.Errorf("wait for a shared-import slot for %s: %w", f.Path, context.Cause(ctx))
		}
		g.waiting(f, err)
		return &watcher.NotYet{Waiting: waitingForSlot, RetryIn: g.slots.RetryDelay()}
	}
	imp := g.acquired(f)
	err = job(held)
	release()
	g.update(func() { imp.ReleasedAt = time.Now() })
	if cause := context.Cause(held); errors.Is(cause, errSlotLost) && err != nil {
		return fmt.Errorf("import %s: %w", f.Path, cause)
	}
	return err
}

// waiting records that f found no free slot, with the error of the try if
// it failed.
func (g *sharedGate) waiting(f watcher.File, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	imp := g.imports[f.Path]
	if imp == nil || !imp.Waiting {
		imp = &sharedImport{Path: relPath(f), Waiting: true, WaitingSince: time.Now()}
		g.imports[f.Path] = imp
	}
	imp.Error = ""
	if err != nil {
		imp.Error = err.Error()
	}
}

// acquired records that f's job holds a slot from now.
func (g *sharedGate) acquired(f watcher.File) *sharedImport {
	g.mu.Lock()
	defer g.mu.Unlock()
	imp := g.imports[f.Path]
	if imp == nil || !imp.Waiting {
		imp = &sharedImport{Path: relPath(f)}
		g.imports[f.Path] = imp
	}
	imp.Waiting, imp.Error, imp.AcquiredAt, imp.ReleasedAt = false, "", time.Now(), time.Time{}
	return imp
}

// relPath is f's path relative to its directory, as /status shows it.
func relPath(f watcher.File) string {
	rel, err := filepath.Rel(f.Root, f.Path)
	if err != nil {
		rel = f.Path
	}
	return filepath.ToSlash(rel)
}

func (g *sharedGate) update(fn func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fn()
}

// sharedStatus is what /status shows of the shared-import limit.
type sharedStatus struct {
	// WaitingForSlot are the files waiting for a shared-import slot,
	// relative to their directory.
	WaitingForSlot []string       `json:"waiting_for_slot"`
	Imports        []sharedImport `json:"imports"`
}

// status is what /status shows of the shared-import limit, given the
// watcher's status: a file counts as waiting only while the watcher says it
// waits, so that one that went away meanwhile is not shown waiting.
func (g *sharedGate) status(ws watcher.Status) *sharedStatus {
	if g == nil || g.slots == nil {
		return nil
	}
	waiting := map[string]bool{}
	for _, f := range ws.Files {
		if f.Waiting == waitingForSlot {
			waiting[f.Path] = true
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	s := &sharedStatus{WaitingForSlot: []string{}, Imports: []sharedImport{}}
	for _, p := range slices.Sorted(maps.Keys(g.imports)) {
		imp := *g.imports[p]
		imp.Waiting = imp.Waiting && waiting[imp.Path]
		if imp.Waiting {
			s.WaitingForSlot = append(s.WaitingForSlot, imp.Path)
		}
		s.Imports = append(s.Imports, imp)
	}
	return s
}
