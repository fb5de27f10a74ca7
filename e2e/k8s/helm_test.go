package k8s

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// defaultHelm is where e2e/setup.sh builds helm; IMAGEDROP_TEST_HELM
// overrides it.
const defaultHelm = "/var/cache/imagedrop/bin/helm"

// chartDir is the Helm chart, relative to the module root.
const chartDir = "deploy/chart/imagedrop"

// flavours are the containerd setups the chart and deploy/ support, with
// the kustomize directories of each (relative to deploy/): the install and
// the uninstall's unpin DaemonSet.
var flavours = []struct{ name, overlay, unpin string }{
	{"containerd", ".", "unpin/containerd"},
	{"k3s", "examples/k3s", "unpin/k3s"},
	{"rke2", "examples/rke2", "unpin/rke2"},
}

func findHelm() (string, error) {
	helm := os.Getenv("IMAGEDROP_TEST_HELM")
	if helm == "" {
		helm = defaultHelm
	}
	if _, err := os.Stat(helm); err != nil {
		return "", fmt.Errorf("helm: %w (run e2e/setup.sh, or set IMAGEDROP_TEST_HELM)", err)
	}
	return helm, nil
}

// requireHelm returns helm, failing the test under CI if it is missing and
// skipping it otherwise.
func requireHelm(t *testing.T) string {
	t.Helper()
	helm, err := findHelm()
	if err != nil {
		if harness.InCI() {
			t.Fatalf("helm is required under CI: %v", err)
		}
		t.Skip(err)
	}
	return helm
}

// runHelm runs helm with args, with its cache and configuration in a
// temporary directory, and returns its standard output.
func runHelm(ctx context.Context, t *testing.T, helm string, env []string, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.CommandContext(ctx, helm, args...)
	cmd.Dir = moduleRoot()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(errb.Bytes()))
	}
	return out.String(), nil
}

// helmTemplate renders the chart as release "imagedrop" in namespace
// imagedrop with the values of valuesYAML (and --set sets), hooks and
// tests included.
func helmTemplate(ctx context.Context, t *testing.T, helm, valuesYAML string, sets ...string) []byte {
	t.Helper()
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, []byte(valuesYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"template", "imagedrop", chartDir, "--namespace", "imagedrop", "-f", f}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	out, err := runHelm(ctx, t, helm, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(out)
}

// kustomize renders deploy/ (dir relative to it) with kubectl kustomize.
func kustomize(ctx context.Context, t *testing.T, dir string) []byte {
	t.Helper()
	out, err := exec.CommandContext(ctx, "kubectl", "kustomize", filepath.Join(moduleRoot(), "deploy", dir)).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		t.Fatalf("kubectl kustomize deploy/%s: %v", dir, err)
	}
	return out
}

// splitYAML splits a multi-document YAML stream into its non-empty documents.
func splitYAML(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(append([]byte("\n"), b...), []byte("\n---")) {
		// A separator line may carry a comment ("--- # Source: …").
		if i := bytes.IndexByte(d, '\n'); i >= 0 && bytes.HasPrefix(bytes.TrimSpace(d[:i]), []byte("#")) {
			d = d[i:]
		}
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

func stripComments(b []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}
