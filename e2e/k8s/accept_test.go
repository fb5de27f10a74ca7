package k8s

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagedrop/imagedrop/e2e/harness"
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
	cfg, err := harness.FindKubernetes()
	if err == nil {
		_, err = exec.LookPath("kubectl")
	}
	var crds string
	if err == nil {
		crds, err = operatorCRDs(t)
	}
	if err != nil {
		if harness.InCI() {
			t.Fatalf("kube-apiserver, kubectl and the Prometheus Operator's CRDs are required under CI: %v", err)
		}
		t.Skipf("cannot check the rendered objects: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	k := harness.StartAPIServer(t, cfg)
	for _, kind := range []string{"servicemonitors", "podmonitors", "prometheusrules"} {
		if out, err := k.Kubectl(ctx, nil, "apply", "--server-side", "-f", filepath.Join(crds, "monitoring.coreos.com_"+kind+".yaml")); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if out, err := k.Kubectl(ctx, nil, "wait", "--for", "condition=Established", "--timeout", "60s", "crd/"+kind+".monitoring.coreos.com"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
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
