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
	// Acquire blocks until a slot is held or ctx ends, calling waiting
	// after each try that found none, with the error of a try that failed.
	// The context it returns ends when ctx ends or the slot is lost;
	// release gives the slot back.
	Acquire(ctx context.Context, waiting func(error)) (held context.Context, release func(), err error)
}

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
// Waiting is not a stall: every try reports progress.
func (g *sharedGate) run(ctx context.Context, f watcher.File, job func(context.Context) error) error {
	if g == nil || g.slots == nil || !slices.Contains(g.roots, filepath.Clean(f.Root)) {
		return job(ctx)
	}
	rel, err := filepath.Rel(f.Root, f.Path)
	if err != nil {
		rel = f.Path
	}
	imp := &sharedImport{Path: filepath.ToSlash(rel), Waiting: true, WaitingSince: time.Now()}
	g.set(f.Path, imp)
	held, release, err := g.slots.Acquire(ctx, func(err error) {
		f.Progress()
		g.update(func() {
			imp.Error = ""
			if err != nil {
				imp.Error = err.Error()
			}
		})
	})
	if err != nil {
		g.update(func() { imp.Waiting = false })
		return fmt.Errorf("wait for a shared-import slot for %s: %w", f.Path, err)
	}
	g.update(func() { imp.Waiting, imp.Error, imp.AcquiredAt = false, "", time.Now() })
	err = job(held)
	release()
	g.update(func() { imp.ReleasedAt = time.Now() })
	if cause := context.Cause(held); errors.Is(cause, errSlotLost) && err != nil {
		return fmt.Errorf("import %s: %w", f.Path, cause)
	}
	return err
}

func (g *sharedGate) set(path string, imp *sharedImport) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.imports[path] = imp
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

func (g *sharedGate) status() *sharedStatus {
	if g == nil || g.slots == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	s := &sharedStatus{WaitingForSlot: []string{}, Imports: []sharedImport{}}
	for _, p := range slices.Sorted(maps.Keys(g.imports)) {
		imp := *g.imports[p]
		if imp.Waiting {
			s.WaitingForSlot = append(s.WaitingForSlot, imp.Path)
		}
		s.Imports = append(s.Imports, imp)
	}
	return s
}
