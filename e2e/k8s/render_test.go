package k8s

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// fullValues turns on every optional object of the chart.
const fullValues = `
extraRegistries: [registry.local:5000, mirror.example.com]
lists:
  images.txt: |
    docker.io/library/busybox:1.36
pullAuth:
  dockerConfigJson: '{"auths":{"registry.example.com":{"auth":"dXNlcjpwYXNz"}}}'
extraArgs: [--settle=2s]
verify: {policy: signature, keys: {secretName: imagedrop-verify-keys, files: [cosign.pub, ops.pub]}}
env:
  - name: IMAGEDROP_LOG_LEVEL
    value: debug
monitoring: {serviceMonitor: true, prometheusRule: true, dashboard: true, labels: {release: kube-prometheus-stack}}
`

// operatorKinds are the Prometheus Operator's kinds, which k8s.io/api does
// not have: the real kube-apiserver checks them against their CRDs
// (TestRenderedObjectsAccepted).
var operatorKinds = []string{"ServiceMonitor", "PodMonitor", "PrometheusRule"}

// TestChartLint runs helm lint --strict on the chart with its defaults and
// with every option on.
func TestChartLint(t *testing.T) {
	helm := requireHelm(t)
	values := filepath.Join(t.TempDir(), "full.yaml")
	if err := os.WriteFile(values, []byte(fullValues), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{}, {"-f", values}, {"--set", "flavour=k3s"}, {"--set", "flavour=rke2"}, {"--set", "sharedImages.claimName=imagedrop-shared"}} {
		if out, err := runHelm(t.Context(), t, helm, nil, append([]string{"lint", "--strict", chartDir}, args...)...); err != nil {
			t.Errorf("helm lint %q: %v\n%s", args, err, out)
		}
	}
	if _, err := runHelm(t.Context(), t, helm, nil, "template", chartDir, "--set", "flavour=docker"); err == nil ||
		!strings.Contains(err.Error(), `flavour "docker": want containerd, k3s or rke2`) {
		t.Errorf("an unknown flavour: %v; want it refused, naming it", err)
	}
}

// TestChartMonitoringFiles checks that the chart's copies of deploy/monitoring's
// objects are those files byte for byte.
func TestChartMonitoringFiles(t *testing.T) {
	for copy, orig := range map[string]string{
		"servicemonitor.yaml": "servicemonitor.yaml", "podmonitor.yaml": "podmonitor/podmonitor.yaml",
		"prometheusrule.yaml": "prometheusrule.yaml", "dashboard.json": "dashboard.json",
	} {
		got, err := os.ReadFile(filepath.Join(moduleRoot(), chartDir, "files", copy))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(moduleRoot(), "deploy", "monitoring", orig))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s/files/%s differs from deploy/monitoring/%s: copy it again (cp deploy/monitoring/%[3]s %[1]s/files/%[2]s)", chartDir, copy, orig)
		}
	}
}

// TestChartMatchesKustomize renders, for each flavour, the chart (defaults)
// and the kustomize directories of deploy/ (the install and deploy/unpin's),
// decodes every object strictly into its Kubernetes API type (a field the
// type lacks fails), and compares the DaemonSets field by field, Helm's own
// labels and hook annotations aside: imagedrop, and the uninstall's
// imagedrop-unpin with the chart's pre-delete hook.
func TestChartMatchesKustomize(t *testing.T) {
	helm := requireHelm(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for _, fl := range flavours {
		t.Run(fl.name, func(t *testing.T) {
			chart := decodeAll(t, "chart "+fl.name, helmTemplate(ctx, t, helm, fullValues, "flavour="+fl.name))
			kust := decodeAll(t, "deploy/"+fl.overlay, kustomize(ctx, t, fl.overlay))
			def := decodeAll(t, "chart "+fl.name+" (defaults)", helmTemplate(ctx, t, helm, "", "flavour="+fl.name))
			got, want := def.daemonSet(t, "imagedrop"), kust.daemonSet(t, "imagedrop")
			if diff := cmp.Diff(normalize(want), normalize(got)); diff != "" {
				t.Errorf("DaemonSet imagedrop: deploy/%s (-) and the chart with flavour=%s (+) differ:\n%s", fl.overlay, fl.name, diff)
			}
			unpin := decodeAll(t, "deploy/"+fl.unpin, kustomize(ctx, t, fl.unpin))
			got, want = def.daemonSet(t, "imagedrop-unpin"), unpin.daemonSet(t, "imagedrop-unpin")
			if diff := cmp.Diff(normalize(want), normalize(got)); diff != "" {
				t.Errorf("DaemonSet imagedrop-unpin: deploy/%s (-) and the chart's pre-delete hook with flavour=%s (+) differ:\n%s", fl.unpin, fl.name, diff)
			}
			for _, kind := range []string{"Secret", "ConfigMap", "DaemonSet", "Job", "Pod"} {
				if !slices.ContainsFunc(chart, func(o object) bool { return o.kind == kind }) {
					t.Errorf("the chart with every option renders no %s", kind)
				}
			}
		})
	}
}

// sharedVariants are the chart's values for a shared images directory, with
// the kustomize overlay that must render the same DaemonSet, Role and
// RoleBinding: base + components/shared-images (a PersistentVolumeClaim), and
// examples/shared-images (an NFS export).
var sharedVariants = []struct {
	name, values string
	components   []string // of base, or
	overlay      string   // a kustomize directory of deploy/
}{
	{name: "persistentVolumeClaim", values: "sharedImages: {claimName: imagedrop-shared}", components: []string{"components/shared-images"}},
	{name: "nfs", values: "sharedImages: {nfs: {server: nfs.example.com, path: /exports/images}}", overlay: "examples/shared-images"},
}

// TestChartSharedImages checks the chart's shared images directory against
// deploy/components/shared-images: the same DaemonSet (volume, read-only
// mount, --rescan-dir, slots, lease duration), Role and RoleBinding, all
// decoded strictly; without slots no Role, and without a volume nothing; a
// claim and an NFS export at once are refused.
func TestChartSharedImages(t *testing.T) {
	helm := requireHelm(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	deploy := filepath.Join(moduleRoot(), "deploy")
	for _, v := range sharedVariants {
		t.Run(v.name, func(t *testing.T) {
			chart := decodeAll(t, "chart "+v.name, helmTemplate(ctx, t, helm, v.values))
			var kust objects
			if v.overlay != "" {
				kust = decodeAll(t, "deploy/"+v.overlay, kustomize(ctx, t, v.overlay))
			} else {
				kust = decodeAll(t, "base + "+strings.Join(v.components, " + "), renderComponents(ctx, t, deploy, "base", v.components...))
			}
			if diff := cmp.Diff(normalize(kust.daemonSet(t, "imagedrop")), normalize(chart.daemonSet(t, "imagedrop"))); diff != "" {
				t.Errorf("DaemonSet imagedrop: kustomize (-) and the chart (+) differ:\n%s", diff)
			}
			for _, kind := range []string{"Role", "RoleBinding"} {
				if diff := cmp.Diff(kust.named(t, kind, "imagedrop-shared-import-slots"), chart.named(t, kind, "imagedrop-shared-import-slots")); diff != "" {
					t.Errorf("%s: kustomize (-) and the chart (+) differ:\n%s", kind, diff)
				}
			}
		})
	}
	noSlots := decodeAll(t, "chart without slots", helmTemplate(ctx, t, helm, sharedVariants[0].values, "sharedImages.importSlots=0"))
	env := noSlots.daemonSet(t, "imagedrop").Spec.Template.Spec.Containers[0].Env
	isSlotRole := func(o object) bool { return o.kind == "Role" && o.name == "imagedrop-shared-import-slots" }
	if slices.ContainsFunc(noSlots, isSlotRole) ||
		slices.ContainsFunc(env, func(e corev1.EnvVar) bool { return e.Name == "IMAGEDROP_SHARED_IMPORT_SLOTS" }) ||
		!slices.ContainsFunc(env, func(e corev1.EnvVar) bool { return e.Name == "IMAGEDROP_RESCAN_DIR" }) {
		t.Errorf("importSlots=0: want --rescan-dir without slots, and no Role; got env %v", env)
	}
	for _, o := range decodeAll(t, "chart (defaults)", helmTemplate(ctx, t, helm, "")) {
		if isSlotRole(o) || strings.Contains(string(o.raw), "/var/lib/imagedrop/shared") {
			t.Errorf("the chart's defaults render a shared directory: %s", o)
		}
	}
	leaseNS := decodeAll(t, "chart with leaseNamespace", helmTemplate(ctx, t, helm, sharedVariants[0].values, "sharedImages.leaseNamespace=slots"))
	if r := leaseNS.named(t, "Role", "imagedrop-shared-import-slots").(*rbacv1.Role); r.Namespace != "slots" {
		t.Errorf("leaseNamespace=slots: the Role is in %q; want slots, where the Leases are", r.Namespace)
	}
	for set, want := range map[string]string{
		"sharedImages.nfs.server=nfs.example.com":                                                   "sharedImages.nfs: path is required with server",
		"sharedImages.nfs.server=nfs.example.com,sharedImages.nfs.path=/x,sharedImages.claimName=c": "sharedImages: set claimName or nfs, not both",
	} {
		if _, err := runHelm(ctx, t, helm, nil, "template", chartDir, "--set", set); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: %v; want it refused with %q", set, err, want)
		}
	}
}

// named returns the object of kind and name, Helm's labels dropped.
func (os objects) named(t *testing.T, kind, name string) any {
	t.Helper()
	for _, o := range os {
		if o.kind != kind || o.name != name {
			continue
		}
		switch obj := o.obj.(type) {
		case *rbacv1.Role:
			obj = obj.DeepCopy()
			for _, l := range helmLabels {
				delete(obj.Labels, l)
			}
			return obj
		case *rbacv1.RoleBinding:
			obj = obj.DeepCopy()
			for _, l := range helmLabels {
				delete(obj.Labels, l)
			}
			return obj
		}
		return o.obj
	}
	t.Fatalf("no %s %s", kind, name)
	return nil
}

// object is one rendered document, decoded.
type object struct {
	kind, name string
	obj        any
	raw        []byte
}

type objects []object

// decodeAll decodes every document strictly into its API type.
func decodeAll(t *testing.T, what string, stream []byte) objects {
	t.Helper()
	var out objects
	for _, doc := range splitYAML(stream) {
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, doc)
		}
		o := object{kind: meta.Kind, name: meta.Metadata.Name, raw: doc}
		o.obj = newTyped(meta.APIVersion, meta.Kind)
		if o.obj == nil {
			if !slices.Contains(operatorKinds, meta.Kind) {
				t.Errorf("%s: %s %s/%s has no API type in this test", what, meta.APIVersion, meta.Kind, meta.Metadata.Name)
			}
			out = append(out, o)
			continue
		}
		if err := yaml.UnmarshalStrict(doc, o.obj); err != nil {
			t.Errorf("%s: %s %s does not decode strictly: %v", what, meta.Kind, meta.Metadata.Name, err)
		}
		out = append(out, o)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no objects", what)
	}
	return out
}

// newTyped returns a pointer to the Go type of apiVersion/kind, or nil.
func newTyped(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "apps/v1 DaemonSet":
		return &appsv1.DaemonSet{}
	case "batch/v1 Job":
		return &batchv1.Job{}
	case "v1 Pod":
		return &corev1.Pod{}
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1 Service":
		return &corev1.Service{}
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Secret":
		return &corev1.Secret{}
	case "v1 Namespace":
		return &corev1.Namespace{}
	case "rbac.authorization.k8s.io/v1 Role":
		return &rbacv1.Role{}
	case "rbac.authorization.k8s.io/v1 RoleBinding":
		return &rbacv1.RoleBinding{}
	case "rbac.authorization.k8s.io/v1 ClusterRole":
		return &rbacv1.ClusterRole{}
	case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}
	case "admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy":
		return &admissionv1.ValidatingAdmissionPolicy{}
	case "admissionregistration.k8s.io/v1 ValidatingAdmissionPolicyBinding":
		return &admissionv1.ValidatingAdmissionPolicyBinding{}
	}
	return nil
}

func (os objects) daemonSet(t *testing.T, name string) *appsv1.DaemonSet {
	t.Helper()
	for _, o := range os {
		if ds, ok := o.obj.(*appsv1.DaemonSet); ok && o.name == name {
			return ds
		}
	}
	t.Fatalf("no DaemonSet %s", name)
	return nil
}

// helmLabels are the labels the chart adds to its objects' metadata.
var helmLabels = []string{"app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/version", "helm.sh/chart"}

// normalize drops Helm's labels and hook annotations and sorts the lists
// whose order means nothing (env, volumes, mounts), on a copy.
func normalize(ds *appsv1.DaemonSet) *appsv1.DaemonSet {
	ds = ds.DeepCopy()
	for _, l := range helmLabels {
		delete(ds.Labels, l)
	}
	maps.DeleteFunc(ds.Annotations, func(k, _ string) bool { return strings.HasPrefix(k, "helm.sh/") })
	if len(ds.Annotations) == 0 {
		ds.Annotations = nil
	}
	spec := &ds.Spec.Template.Spec
	slices.SortFunc(spec.Volumes, func(a, b corev1.Volume) int { return strings.Compare(a.Name, b.Name) })
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			slices.SortFunc(cs[i].Env, func(a, b corev1.EnvVar) int { return strings.Compare(a.Name, b.Name) })
			slices.SortFunc(cs[i].VolumeMounts, func(a, b corev1.VolumeMount) int { return strings.Compare(a.MountPath, b.MountPath) })
		}
	}
	return ds
}

// String names an object in messages.
func (o object) String() string { return fmt.Sprintf("%s/%s", o.kind, o.name) }

// nonRootValues run imagedrop as a user that is not root, in the group of
// containerd's socket ([grpc] gid = 64123).
const nonRootValues = `
securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, supplementalGroups: [64123]}
`

// TestChartNonRoot renders the chart's non-root mode: the DaemonSet and the
// uninstall's unpin DaemonSet run every container as that user with the
// socket's group, and values that could not reach the socket are refused.
func TestChartNonRoot(t *testing.T) {
	helm := requireHelm(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	objs := decodeAll(t, "chart (non-root)", helmTemplate(ctx, t, helm, fullValues+nonRootValues))
	for _, name := range []string{"imagedrop", "imagedrop-unpin"} {
		spec := objs.daemonSet(t, name).Spec.Template.Spec
		if sc := spec.SecurityContext; !slices.Equal(sc.SupplementalGroups, []int64{64123}) || sc.FSGroup == nil || *sc.FSGroup != 65532 {
			t.Errorf("DaemonSet %s: pod securityContext %+v; want supplementalGroups [64123] and fsGroup 65532", name, sc)
		}
		for _, c := range append(spec.InitContainers, spec.Containers...) {
			sc := c.SecurityContext
			if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 65532 || sc.RunAsGroup == nil || *sc.RunAsGroup != 65532 ||
				sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				t.Errorf("DaemonSet %s container %s: securityContext %+v; want uid and gid 65532, runAsNonRoot", name, c.Name, sc)
			}
		}
	}
	def := decodeAll(t, "chart (defaults)", helmTemplate(ctx, t, helm, "")).daemonSet(t, "imagedrop")
	if sc := def.Spec.Template.Spec.SecurityContext; sc.SupplementalGroups != nil || sc.FSGroup != nil {
		t.Errorf("defaults: pod securityContext %+v; want no groups (root)", sc)
	}
	if u := def.Spec.Template.Spec.Containers[0].SecurityContext.RunAsUser; u == nil || *u != 0 {
		t.Errorf("defaults: runAsUser %v, want 0", u)
	}
	for _, tt := range []struct{ values, want string }{
		{"securityContext: {runAsNonRoot: true}", "securityContext.runAsNonRoot needs a securityContext.runAsUser other than 0"},
		{"securityContext: {runAsUser: 1000, runAsGroup: 1000}", "securityContext.runAsUser 1000 cannot reach containerd's socket: set securityContext.supplementalGroups"},
	} {
		f := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(f, []byte(tt.values), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := runHelm(ctx, t, helm, nil, "template", chartDir, "-f", f); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("values %s: %v; want refused with %q", tt.values, err, tt.want)
		}
	}
}

// TestChartUninstallImages: every pod of the uninstall (the pre-delete
// hooks) runs imagedrop's own image, so an air-gapped cluster mirrors
// nothing else to uninstall; kubectl.image is helm test's only.
func TestChartUninstallImages(t *testing.T) {
	helm := requireHelm(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	objs := decodeAll(t, "chart", helmTemplate(ctx, t, helm, fullValues, "image.tag=1.2.3", "uninstall.kubeconfigSecret=kc"))
	const want = "ghcr.io/imagedrop/imagedrop:1.2.3"
	hooks := 0
	for _, o := range objs {
		var meta metav1.ObjectMeta
		var spec *corev1.PodSpec
		switch v := o.obj.(type) {
		case *appsv1.DaemonSet:
			meta, spec = v.ObjectMeta, &v.Spec.Template.Spec
		case *batchv1.Job:
			meta, spec = v.ObjectMeta, &v.Spec.Template.Spec
		default:
			continue
		}
		if meta.Annotations["helm.sh/hook"] != "pre-delete" {
			continue
		}
		hooks++
		for _, c := range append(spec.InitContainers, spec.Containers...) {
			if c.Image != want {
				t.Errorf("%s container %s: image %s, want %s", o, c.Name, c.Image, want)
			}
		}
		if job, ok := o.obj.(*batchv1.Job); ok {
			args := strings.Join(job.Spec.Template.Spec.Containers[0].Args, " ")
			if wantArgs := "unpin --wait-daemonset=imagedrop-unpin --wait-namespace=imagedrop --wait-timeout=5m --kubeconfig=/etc/imagedrop/kube/kubeconfig"; args != wantArgs {
				t.Errorf("%s args %q, want %q", o, args, wantArgs)
			}
		}
	}
	if hooks != 2 {
		t.Errorf("%d pre-delete DaemonSets and Jobs, want 2 (the unpin DaemonSet and the Job that waits for it)", hooks)
	}
}
