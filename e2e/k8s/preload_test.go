package k8s

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// appImage is the Deployment's image, in the archive whose import the
// startup preload waits for.
const appImage = "example.com/imagedrop-e2e/app:1"

// podKubeconfig writes, for the DaemonSet's pod, a kubeconfig that reaches
// the test's API server on 127.0.0.1 (the pod has the host's network; the
// cluster has no kube-proxy for the kubernetes Service) with the pod's own
// bound service-account token, so the admission policy applies as on a
// real cluster. It returns its directory.
func podKubeconfig(t *testing.T, k *harness.Kubernetes) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: pod, user: {tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token}}]
contexts: [{name: local, context: {cluster: local, user: pod}}]
current-context: local
`, k.Server)
	if err := os.WriteFile(filepath.Join(dir, "kubeconfig"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testStartupTaint: the node registered with the startup taint; while
// imagedrop's preload waits for the app archive (held by the test until
// release), a Deployment of that image with imagePullPolicy Never stays
// Pending, unschedulable, rather than failing with ErrImageNeverPull; once
// the archive is imported, imagedrop sets its condition and removes the
// taint, and the Deployment's pod runs.
func testStartupTaint(ctx context.Context, t *testing.T, k *harness.Kubernetes, release func()) {
	t.Helper()
	waitCondition(ctx, t, k, k.NodeName, "Preloading", "")
	if n, err := getNodeObject(ctx, k, k.NodeName); err != nil || !hasTaint(n, startupTaint) {
		t.Fatalf("node %s: taints %v, %v; want %s, registered by kubelet", k.NodeName, n.Spec.Taints, err, startupTaint)
	}
	deployment := fmt.Sprintf(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"app","namespace":"default"},
"spec":{"replicas":1,"selector":{"matchLabels":{"app":"app"}},"template":{"metadata":{"labels":{"app":"app"}},
"spec":{"automountServiceAccountToken":false,"terminationGracePeriodSeconds":1,
"containers":[{"name":"app","image":%q,"imagePullPolicy":"Never"}]}}}}`, appImage)
	if out, err := k.Kubectl(ctx, []byte(deployment), "create", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	waitFor(ctx, t, "app pod Pending, unschedulable", func() error {
		var pods corev1.PodList
		if err := getJSON(ctx, k, &pods, "-n", "default", "get", "pods", "-l", "app=app"); err != nil {
			return err
		}
		if len(pods.Items) != 1 {
			return fmt.Errorf("%d app pods", len(pods.Items))
		}
		p := pods.Items[0]
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				if p.Status.Phase != corev1.PodPending || p.Spec.NodeName != "" {
					t.Fatalf("app pod: phase %s on %q, want Pending, unscheduled", p.Status.Phase, p.Spec.NodeName)
				}
				return nil
			}
		}
		return fmt.Errorf("app pod %s: phase %s, conditions %+v", p.Name, p.Status.Phase, p.Status.Conditions)
	})
	release()
	waitCondition(ctx, t, k, k.NodeName, "PreloadComplete", "")
	waitFor(ctx, t, "app Deployment available", func() error {
		var d struct {
			Status struct {
				AvailableReplicas int `json:"availableReplicas"`
			} `json:"status"`
		}
		if err := getJSON(ctx, k, &d, "-n", "default", "get", "deployment", "app"); err != nil {
			return err
		}
		if d.Status.AvailableReplicas != 1 {
			return fmt.Errorf("%d available replicas", d.Status.AvailableReplicas)
		}
		return nil
	})
	if n, err := getNodeObject(ctx, k, k.NodeName); err != nil || hasTaint(n, startupTaint) {
		t.Errorf("node %s: taints %v, %v; want %s removed", k.NodeName, n.Spec.Taints, err, startupTaint)
	}
	if out, err := k.Kubectl(ctx, nil, "get", "events", "-A", "--field-selector", "involvedObject.kind=Node"); err == nil {
		t.Logf("kubectl get events (the node's):\n%s", out)
	}
	waitEvent(ctx, t, k, k.NodeName, "PreloadComplete", "files done")
	waitEvent(ctx, t, k, k.NodeName, "StartupTaintRemoved", "startup preload complete")
}
