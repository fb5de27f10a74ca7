package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// operatorModule holds the Prometheus Operator's CRDs in
// example/prometheus-operator-crd/; it is fetched into the module cache, not
// required by go.mod.
const operatorModule = "github.com/prometheus-operator/prometheus-operator@v0.85.0"

// TestMonitoringObjects has a real kube-apiserver, with the Prometheus
// Operator's CRDs installed, accept the ServiceMonitor, PodMonitor and
// PrometheusRule of deploy/monitoring (as both its overlays render them),
// validating them against the CRDs' schemas; an object with a field the
// schema lacks is refused, so the validation is real.
func TestMonitoringObjects(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver: not with -short")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	k := monitoringAPIServer(ctx, t, "the monitoring objects")

	deploy := filepath.Join(moduleRoot(), "deploy")
	for _, overlay := range [][]string{
		{"base", "monitoring"},
		{"base", "monitoring", "monitoring/podmonitor"},
	} {
		rendered := renderComponents(ctx, t, deploy, overlay[0], overlay[1:]...)
		if out, err := k.Kubectl(ctx, rendered, "apply", "--server-side", "--field-manager", "e2e", "-f", "-"); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(overlay, " + "), err, out)
		}
	}
	for _, obj := range []string{"servicemonitor/imagedrop", "podmonitor/imagedrop", "prometheusrule/imagedrop"} {
		var got struct {
			Metadata struct {
				Namespace string `json:"namespace"`
			} `json:"metadata"`
			Spec map[string]any `json:"spec"`
		}
		if err := getJSON(ctx, k, &got, "-n", "imagedrop", "get", obj); err != nil {
			t.Fatal(err)
		}
		if len(got.Spec) == 0 {
			t.Errorf("%s: stored without a spec", obj)
		}
	}

	bad := `{"apiVersion":"monitoring.coreos.com/v1","kind":"ServiceMonitor",
"metadata":{"name":"bad","namespace":"imagedrop"},
"spec":{"selector":{},"endpoints":[{"port":"metrics","relabellings":[]}]}}`
	out, err := k.Kubectl(ctx, []byte(bad), "apply", "--server-side", "--field-manager", "e2e", "-f", "-")
	if err == nil || !strings.Contains(err.Error(), "relabellings") {
		t.Errorf("a ServiceMonitor with an unknown field: %v\n%s; want it refused, naming the field", err, out)
	}
}

// operatorCRDs fetches the Prometheus Operator module into the module cache
// (outside this module, so go.mod is untouched) and returns its directory
// monitoringAPIServer starts etcd and kube-apiserver with the Prometheus
// Operator's CRDs established, for a test that checks what against them;
// without them it fails under CI and skips elsewhere.
func monitoringAPIServer(ctx context.Context, t *testing.T, what string) *harness.Kubernetes {
	t.Helper()
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
		t.Skipf("cannot check %s: %v", what, err)
	}
	k := harness.StartAPIServer(t, cfg)
	for _, kind := range []string{"servicemonitors", "podmonitors", "prometheusrules"} {
		f := filepath.Join(crds, "monitoring.coreos.com_"+kind+".yaml")
		if out, err := k.Kubectl(ctx, nil, "apply", "--server-side", "-f", f); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if out, err := k.Kubectl(ctx, nil, "wait", "--for", "condition=Established", "--timeout", "60s", "crd/"+kind+".monitoring.coreos.com"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	return k
}

// of CRDs.
func operatorCRDs(t *testing.T) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", operatorModule)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GO111MODULE=on")
	out, err := cmd.Output()
	var m struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &m); jerr != nil && err == nil {
		err = jerr
	}
	if err != nil || m.Error != "" {
		return "", fmt.Errorf("go mod download %s: %v %s", operatorModule, err, m.Error)
	}
	dir := filepath.Join(m.Dir, "example", "prometheus-operator-crd")
	if _, err := os.Stat(dir); err != nil {
		return "", errors.New("the module has no example/prometheus-operator-crd")
	}
	return dir, nil
}

// renderComponents renders an overlay of base with components, paths
// relative to deploy.
func renderComponents(ctx context.Context, t *testing.T, deploy, base string, components ...string) []byte {
	t.Helper()
	dir := t.TempDir()
	// kustomize takes paths outside the overlay only relative to it.
	rel := func(p string) string {
		r, err := filepath.Rel(dir, filepath.Join(deploy, p))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	var comps []string
	for _, c := range components {
		comps = append(comps, rel(c))
	}
	k := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [%s]\ncomponents: [%s]\n",
		rel(base), strings.Join(comps, ", "))
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, "kubectl", "kustomize", dir).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s + %s: %v", base, strings.Join(components, " + "), err)
	}
	return out
}
