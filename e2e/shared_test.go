package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// sharedStatus is what /status shows of the shared-import limit.
type sharedStatus struct {
	SharedImports *struct {
		WaitingForSlot []string       `json:"waiting_for_slot"`
		Imports        []sharedImport `json:"imports"`
	} `json:"shared_imports"`
}

// sharedNode is one "node": its own containerd, and an imagedrop that
// watches the shared directory by rescans, limited by the cluster's Leases.
type sharedNode struct {
	name string
	st   store
	d    *daemon
}

// TestSharedDirectoryOneSlot drops a bundle once into a directory two nodes
// share (as an NFS volume would be): both import it, each into its own
// containerd, never both at once with a cluster limit of one slot, counted
// with Leases on a real kube-apiserver. Then the node that holds the slot is
// killed mid-import, and the other imports once the lease expires.
func TestSharedDirectoryOneSlot(t *testing.T) {
	k := harness.RequireAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := k.Kubectl(ctx, nil, "create", "namespace", "imagedrop"); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	var nodes []*sharedNode
	for _, name := range []string{"node-a", "node-b"} {
		nodes = append(nodes, startSharedNode(t, ctx, k, name, shared))
	}

	// Big enough that an import takes a while, even on a fast machine.
	first := harness.RandomImage("example.com/shared/first:1", node, 1, 2, 64<<20)
	dropArchive(t, shared, "first.tar", first)
	for _, n := range nodes {
		n.st.waitImage(first.Name, 2*time.Minute)
	}
	var spans [2][2]time.Time
	for i, n := range nodes {
		imp := waitSharedReleased(t, n.d, "first.tar")
		spans[i] = [2]time.Time{imp.AcquiredAt, imp.ReleasedAt}
	}
	t.Logf("first.tar: %s held the slot %s, %s held it %s", nodes[0].name, spans[0], nodes[1].name, spans[1])
	if spans[0][0].Before(spans[1][1]) && spans[1][0].Before(spans[0][1]) {
		t.Errorf("the two imports overlapped, with one slot: %v and %v", spans[0], spans[1])
	}

	// Kill the holder mid-import; the waiting node proceeds once the
	// holder's lease expires.
	second := harness.RandomImage("example.com/shared/second:1", node, 2, 2, 64<<20)
	dropArchive(t, shared, "second.tar", second)
	var holder, waiter *sharedNode
	eventually(t, 2*time.Minute, "one node importing second.tar, the other waiting", func() error {
		var states []string
		for _, n := range nodes {
			s, err := sharedImportOf(n.d, "second.tar")
			if err != nil {
				return err
			}
			switch {
			case s.holding:
				holder = n
			case s.waiting:
				waiter = n
			}
			states = append(states, fmt.Sprintf("%s %+v", n.name, s))
		}
		if holder == nil || waiter == nil || holder == waiter {
			holder, waiter = nil, nil
			return errors.New(strings.Join(states, "; "))
		}
		return nil
	})
	if err := holder.d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-holder.d.exited
	holder.d.exited <- nil
	waiter.st.waitImage(second.Name, 2*time.Minute)
	waitSharedReleased(t, waiter.d, "second.tar")
	if !strings.Contains(waiter.d.logs.String(), "msg=shared_slot_expired") {
		t.Errorf("%s's log does not say it took over the slot of the killed %s", waiter.name, holder.name)
	}
	out, err := k.Kubectl(ctx, nil, "-n", "imagedrop", "get", "lease", "imagedrop-shared-import-0", "-o", "jsonpath={.spec.holderIdentity}")
	if err != nil || out != "" {
		t.Errorf("after %s's import the slot is held by %q (%v); want nobody", waiter.name, out, err)
	}
}

func startSharedNode(t *testing.T, ctx context.Context, k *harness.Kubernetes, name, shared string) *sharedNode {
	t.Helper()
	c := ownContainerd(ctx, t)
	dir := t.TempDir()
	own := filepath.Join(dir, "images")
	if err := os.Mkdir(own, 0o755); err != nil {
		t.Fatal(err)
	}
	ns := harness.Namespace(t)
	d := startDaemon(t, c, ns, "--images-dir", own, "--state-file", filepath.Join(dir, "state.json"),
		"--rescan-dir", shared, "--rescan-interval", "300ms",
		"--shared-import-slots", "1", "--node-name", name, "--kubeconfig", k.Kubeconfig, "--lease-duration", "3s")
	d.waitReady(30 * time.Second)
	return &sharedNode{name: name, st: newStore(t, c, ns), d: d}
}

// sharedImportState is where one node's job of a shared file stands.
type sharedImportState struct{ waiting, holding bool }

func sharedImportOf(d *daemon, path string) (sharedImportState, error) {
	var s sharedImportState
	imp, err := sharedImportStatus(d, path)
	if err != nil || imp == nil {
		return s, err
	}
	s.waiting = imp.Waiting
	s.holding = !imp.AcquiredAt.IsZero() && imp.ReleasedAt.IsZero()
	return s, nil
}

// sharedImport is one node's last or current job of a shared file.
type sharedImport struct {
	Path       string    `json:"path"`
	Waiting    bool      `json:"waiting"`
	AcquiredAt time.Time `json:"acquired_at"`
	ReleasedAt time.Time `json:"released_at"`
}

// sharedImportStatus returns the node's entry for path in /status, or nil.
func sharedImportStatus(d *daemon, path string) (*sharedImport, error) {
	var s sharedStatus
	code, b, err := d.get("/status")
	if err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("/status: %d %v", code, err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("/status: %w", err)
	}
	if s.SharedImports == nil {
		return nil, errors.New("/status has no shared_imports")
	}
	i := slices.IndexFunc(s.SharedImports.Imports, func(imp sharedImport) bool { return imp.Path == path })
	if i < 0 {
		return nil, nil
	}
	imp := s.SharedImports.Imports[i]
	if imp.Waiting != slices.Contains(s.SharedImports.WaitingForSlot, path) {
		return nil, fmt.Errorf("waiting_for_slot %q disagrees with %+v", s.SharedImports.WaitingForSlot, imp)
	}
	return &imp, nil
}

// waitSharedReleased waits until the node's job of path has given its slot
// back, and returns it.
func waitSharedReleased(t *testing.T, d *daemon, path string) sharedImport {
	t.Helper()
	var got sharedImport
	eventually(t, time.Minute, path+" released its slot", func() error {
		imp, err := sharedImportStatus(d, path)
		if err != nil {
			return err
		}
		if imp == nil || imp.ReleasedAt.IsZero() {
			return fmt.Errorf("%+v", imp)
		}
		got = *imp
		return nil
	})
	return got
}
