package k8s

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRenderedObjectsAccepted has a real kube-apiserver (with the Prometheus
// Operator's CRDs) accept, by a strict server-side apply, every object of
// the chart (every option on, each flavour, the PodMonitor variant, the
// shared images directory) and of each kustomize directory of deploy/
// (deploy/unpin's too); a DaemonSet with a field the API
// lacks is refused, so the check is real.
func TestRenderedObjectsAccepted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver: not with -short")
	}
	helm := requireHelm(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	k := monitoringAPIServer(ctx, t, "the rendered objects")
	// The chart goes into an existing namespace (helm install --create-namespace,
	// or deploy/base's, with its Pod Security labels).
	if out, err := k.Kubectl(ctx, nil, "apply", "--server-side", "-f", filepath.Join(moduleRoot(), "deploy", "base", "namespace.yaml")); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Applied for real (no controller runs here), each over the last: a dry
	// run would refuse a Pod whose ServiceAccount the same run creates.
	apply := func(what string, objs []byte) {
		t.Helper()
		if out, err := k.Kubectl(ctx, objs, "apply", "--server-side", "--force-conflicts", "--validate=strict",
			"--field-manager", "e2e", "-f", "-"); err != nil {
			t.Errorf("%s: %v\n%s", what, err, out)
		}
	}
	for _, fl := range flavours {
		apply("chart flavour="+fl.name, helmTemplate(ctx, t, helm, fullValues, "flavour="+fl.name))
		apply("deploy/"+fl.overlay, kustomize(ctx, t, fl.overlay))
		apply("deploy/"+fl.unpin, kustomize(ctx, t, fl.unpin))
	}
	for _, v := range sharedVariants {
		apply("chart with sharedImages "+v.name, helmTemplate(ctx, t, helm, v.values))
	}
	apply("deploy/examples/shared-images", kustomize(ctx, t, "examples/shared-images"))
	apply("deploy/base + components/shared-images", renderComponents(ctx, t, filepath.Join(moduleRoot(), "deploy"), "base", "components/shared-images"))
	apply("chart with a PodMonitor", helmTemplate(ctx, t, helm, fullValues, "monitoring.serviceMonitor=false", "monitoring.podMonitor=true"))
	apply("deploy/examples/monitoring", kustomize(ctx, t, "examples/monitoring"))
	// A Job's template is immutable: the variant's Job replaces the last one.
	if out, err := k.Kubectl(ctx, nil, "-n", "imagedrop", "delete", "job", "imagedrop-unpin-wait"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	apply("chart as non-root, uninstall with a kubeconfig Secret", helmTemplate(ctx, t, helm, fullValues+nonRootValues, "uninstall.kubeconfigSecret=kc", "uninstall.hostNetwork=true"))

	bad := strings.Replace(string(kustomize(ctx, t, ".")), "      hostNetwork: true\n", "      hostNetwork: true\n      hostNetwrok: true\n", 1)
	out, err := k.Kubectl(ctx, []byte(bad), "apply", "--server-side", "--dry-run=server", "--validate=strict", "--field-manager", "e2e", "-f", "-")
	if err == nil || !strings.Contains(err.Error(), "hostNetwrok") {
		t.Errorf("a DaemonSet with an unknown field: %v\n%s; want it refused, naming the field", err, out)
	}
}
