package k8s

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// testKustomizeUninstall runs the kustomize uninstall of README.md on the
// node, each step as documented, with the test's overlays of deploy/ and
// deploy/unpin/containerd: apply the unpin DaemonSet, wait for its rollout,
// delete it, delete imagedrop. Then containerd's image service must still
// have every image, none with imagedrop's pin or source label.
func testKustomizeUninstall(ctx context.Context, t *testing.T, n *node, install, unpin string) {
	t.Helper()
	cctx := namespaces.WithNamespace(ctx, criNamespace)
	before, err := n.c.Client(t).ImageService().List(cctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"apply", "-k", unpin},
		{"-n", "imagedrop", "rollout", "status", "daemonset/imagedrop-unpin"},
		{"delete", "-k", unpin},
		{"delete", "-k", install},
	} {
		start := time.Now()
		if out, err := n.k.Kubectl(ctx, nil, args...); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		t.Logf("kubectl %s: %s", strings.Join(args, " "), time.Since(start).Round(100*time.Millisecond))
	}
	checkUninstalled(ctx, t, n, before)
}

// writeUnpinOverlay writes a kustomize overlay of deploy/unpin/containerd
// that runs the imagedrop image imported into the node against the test's
// containerd, as writeOverlay does for deploy/.
func writeUnpinOverlay(t *testing.T, containerdDir, containerdSocket string) string {
	t.Helper()
	dir := t.TempDir()
	name, tag, _ := strings.Cut(imagedropImage, ":")
	base, err := filepath.Rel(dir, filepath.Join(moduleRoot(), "deploy", "unpin", "containerd"))
	if err != nil {
		t.Fatal(err)
	}
	kustomization := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
images:
  - name: ghcr.io/imagedrop/imagedrop
    newName: %s
    newTag: %s
patches:
  - path: daemonset.yaml
`, base, name, tag)
	container := fmt.Sprintf(`          imagePullPolicy: Never
          env:
            - name: IMAGEDROP_CONTAINERD_ADDRESS
              value: /run/containerd/%s
`, containerdSocket)
	daemonset := fmt.Sprintf(`apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: imagedrop-unpin
  namespace: imagedrop
spec:
  template:
    spec:
      initContainers:
        - name: unpin
%[1]s      containers:
        - name: done
%[1]s      volumes:
        - name: containerd
          hostPath:
            path: %[2]s
`, container, containerdDir)
	for n, s := range map[string]string{"kustomization.yaml": kustomization, "daemonset.yaml": daemonset} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
