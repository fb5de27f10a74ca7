package k8s

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// TestChartVerifyKeys renders the chart with a verify policy and its keys
// from a Secret, then from a ConfigMap: the keys are mounted read-only and
// each named key file is a --verify-key argument; no policy renders
// neither, and a policy the chart cannot satisfy is refused, saying why.
// (TestRenderedObjectsAccepted has kube-apiserver accept fullValues, whose
// keys come from a Secret.)
func TestChartVerifyKeys(t *testing.T) {
	helm := requireHelm(t)
	const dir = "/etc/imagedrop/verify-keys"
	for _, tt := range []struct {
		name, values string
		args         []string
		source       func(v corev1.VolumeSource) string // the Secret's or ConfigMap's name
	}{
		{"secret", "verify: {policy: signature, keys: {secretName: keys, files: [a.pub, b.pub]}}",
			[]string{"--verify=signature", "--verify-key=" + dir + "/a.pub", "--verify-key=" + dir + "/b.pub"},
			func(v corev1.VolumeSource) string {
				if v.Secret == nil {
					return ""
				}
				return v.Secret.SecretName
			}},
		{"configmap", "verify: {policy: signature, keys: {configMapName: keys}}",
			[]string{"--verify=signature", "--verify-key=" + dir + "/cosign.pub"},
			func(v corev1.VolumeSource) string {
				if v.ConfigMap == nil {
					return ""
				}
				return v.ConfigMap.Name
			}},
		{"checksum", "verify: {policy: checksum}", []string{"--verify=checksum"}, nil},
		{"defaults", "", nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ds := decodeAll(t, "chart "+tt.name, helmTemplate(t.Context(), t, helm, tt.values)).daemonSet(t, "imagedrop")
			spec := ds.Spec.Template.Spec
			c := spec.Containers[0]
			var got []string
			for _, a := range c.Args {
				if strings.HasPrefix(a, "--verify") {
					got = append(got, a)
				}
			}
			if !slices.Equal(got, tt.args) {
				t.Errorf("verify args = %q, want %q", got, tt.args)
			}
			mount := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == dir })
			vol := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == "verify-keys" })
			if tt.source == nil {
				if mount >= 0 || vol >= 0 {
					t.Errorf("keys mounted (mount %d, volume %d) with no keys configured", mount, vol)
				}
				return
			}
			if mount < 0 || !c.VolumeMounts[mount].ReadOnly || c.VolumeMounts[mount].Name != "verify-keys" {
				t.Errorf("mounts %+v: want verify-keys read-only at %s", c.VolumeMounts, dir)
			}
			if vol < 0 || tt.source(spec.Volumes[vol].VolumeSource) != "keys" {
				t.Errorf("volumes %+v: want verify-keys from %s keys", spec.Volumes, tt.name)
			}
		})
	}
	for set, want := range map[string]string{
		"verify.policy=signature": "verify.policy signature needs verify.keys.secretName or verify.keys.configMapName",
		"verify.policy=maybe":     `verify.policy "maybe": want off, checksum or signature`,
	} {
		if _, err := runHelm(t.Context(), t, helm, nil, "template", chartDir, "--set", set); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: %v; want it refused, saying %q", set, err, want)
		}
	}
}

// TestVerifyComponent renders an overlay of deploy/base with the
// deploy/components/verify component: the policy and key are set through
// their env twins and the Secret of keys is mounted read-only.
func TestVerifyComponent(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		if harness.InCI() {
			t.Fatalf("kubectl: %v", err)
		}
		t.Skipf("kubectl: %v", err)
	}
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, filepath.Join(moduleRoot(), "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	overlay := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [%s/base]\ncomponents: [%s/components/verify]\n", rel, rel)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(overlay), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), "kubectl", "kustomize", dir).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v", err)
	}
	spec := decodeAll(t, "base with components/verify", out).daemonSet(t, "imagedrop").Spec.Template.Spec
	env := map[string]string{}
	for _, e := range spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	if env["IMAGEDROP_VERIFY"] != "signature" || env["IMAGEDROP_VERIFY_KEY"] != "/etc/imagedrop/verify-keys/cosign.pub" {
		t.Errorf("env %v: want IMAGEDROP_VERIFY=signature and IMAGEDROP_VERIFY_KEY of the mounted key", env)
	}
	m := slices.IndexFunc(spec.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "verify-keys" })
	v := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == "verify-keys" })
	if m < 0 || !spec.Containers[0].VolumeMounts[m].ReadOnly || v < 0 || spec.Volumes[v].Secret == nil ||
		spec.Volumes[v].Secret.SecretName != "imagedrop-verify-keys" {
		t.Errorf("verify-keys mount %d, volume %d: want the Secret imagedrop-verify-keys mounted read-only", m, v)
	}
}
