package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// heldSlot is the only shared-import slot, held by a node that is not
// there, with a lease long enough never to expire within the test.
const heldSlot = `apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: imagedrop-shared-import-0
  namespace: imagedrop
  labels:
    imagedrop.io/shared-import-slot: "0"
spec:
  holderIdentity: other-node
  leaseDurationSeconds: 3600
`

// TestSharedWaitHoldsNoWorker runs imagedrop with one worker while the only
// shared-import slot is held by another node: the shared archive found at
// start waits for the slot without holding the worker, so a local archive
// dropped meanwhile is imported while it waits; the Node condition says the
// preload waits for a slot; once the other node gives the slot back, the
// shared archive is imported and the preload completes.
func TestSharedWaitHoldsNoWorker(t *testing.T) {
	k := harness.RequireAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, args := range [][]string{{"create", "namespace", "imagedrop"}, {"create", "-f", "-"}} {
		var stdin []byte
		if args[1] == "-f" {
			stdin = []byte(heldSlot + "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: node-w\n")
		}
		if _, err := k.Kubectl(ctx, stdin, args...); err != nil {
			t.Fatal(err)
		}
	}
	c := ownContainerd(ctx, t)
	dir := t.TempDir()
	own, shared := filepath.Join(dir, "images"), filepath.Join(dir, "shared")
	for _, d := range []string{own, shared} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sharedImg := harness.RandomImage("example.com/shared/waits:1", node, 3, 1, 1<<20)
	localImg := harness.RandomImage("example.com/local/goes-on:1", node, 4, 1, 1<<20)
	dropArchive(t, shared, "shared.tar", sharedImg)
	ns := harness.Namespace(t)
	st := newStore(t, c, ns)
	d := startDaemon(t, c, ns, "--images-dir", own, "--state-file", filepath.Join(dir, "state.json"),
		"--workers", "1", "--rescan-dir", shared, "--rescan-interval", "300ms",
		"--shared-import-slots", "1", "--lease-duration", "3s", "--node-name", "node-w", "--kubeconfig", k.Kubeconfig,
		"--node-status-interval", "1s", "--startup-taint", "")

	eventually(t, time.Minute, "shared.tar waiting for the slot", func() error {
		s, err := sharedImportOf(d, "shared.tar")
		if err != nil || !s.waiting {
			return fmt.Errorf("%+v %v", s, err)
		}
		return nil
	})
	dropArchive(t, own, "local.tar", localImg)
	st.waitImage(localImg.Name, time.Minute)
	d.waitFile("local.tar", "done", 30*time.Second)
	if s, err := sharedImportOf(d, "shared.tar"); err != nil || !s.waiting {
		t.Fatalf("shared.tar once local.tar was imported: %+v %v; want still waiting", s, err)
	}
	if _, ok := st.get(sharedImg.Name); ok {
		t.Fatal("the shared image was imported while another node held the only slot")
	}
	f := d.waitFile("shared.tar", "queued", time.Second)
	if f.Attempts != 0 || f.Error != "" {
		t.Errorf("shared.tar while it waits: %+v; want no attempt, no error", f)
	}
	eventually(t, 30*time.Second, "the Node condition says a file waits for a slot", func() error {
		msg, err := k.Kubectl(ctx, nil, "get", "node", "node-w", "-o",
			`jsonpath={.status.conditions[?(@.type=="ImagesPreloaded")].reason}: {.status.conditions[?(@.type=="ImagesPreloaded")].message}`)
		if err != nil || !strings.HasPrefix(msg, "Preloading: ") || !strings.HasSuffix(msg, "; 1 waiting for a shared-import slot") {
			return fmt.Errorf("%q %v", msg, err)
		}
		return nil
	})

	if _, err := k.Kubectl(ctx, nil, "-n", "imagedrop", "patch", "lease", "imagedrop-shared-import-0",
		"--type", "merge", "-p", `{"spec":{"holderIdentity":null}}`); err != nil {
		t.Fatal(err)
	}
	st.waitImage(sharedImg.Name, time.Minute)
	waitSharedReleased(t, d, "shared.tar")
	d.waitReady(30 * time.Second)
	eventually(t, 30*time.Second, "the Node condition True", func() error {
		out, err := k.Kubectl(ctx, nil, "get", "node", "node-w", "-o",
			`jsonpath={.status.conditions[?(@.type=="ImagesPreloaded")].status}`)
		if err != nil || out != "True" {
			return fmt.Errorf("%q %v", out, err)
		}
		return nil
	})
}
