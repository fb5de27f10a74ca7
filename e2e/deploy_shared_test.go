package e2e

import (
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// TestDeploySharedImagesExample renders the shared-images component on the
// base (examples/shared-images): a read-only NFS volume watched by rescans,
// a slot limit, the node's name from the downward API, a token to take
// Leases with, and RBAC for Leases only, in imagedrop's namespace only.
func TestDeploySharedImagesExample(t *testing.T) {
	t.Parallel()
	objs := render(t, filepath.Join(deployDir, "examples", "shared-images"))
	var cr struct {
		Rules []struct {
			Resources []string `json:"resources"`
		} `json:"rules"`
	}
	find(t, objs, "ClusterRole", "imagedrop", &cr) // the node's, from the base
	for _, r := range cr.Rules {
		if slices.Contains(r.Resources, "leases") {
			t.Errorf("ClusterRole imagedrop grants %v: the shared-import slots need no cluster-wide rights", r.Resources)
		}
	}
	var role struct {
		Rules []struct {
			APIGroups     []string `json:"apiGroups"`
			Resources     []string `json:"resources"`
			ResourceNames []string `json:"resourceNames"`
			Verbs         []string `json:"verbs"`
		} `json:"rules"`
	}
	if o := find(t, objs, "Role", "imagedrop-shared-import-slots", &role); o.Metadata.Namespace != "imagedrop" {
		t.Errorf("Role namespace = %q, want imagedrop", o.Metadata.Namespace)
	}
	for _, r := range role.Rules {
		if !slices.Equal(r.APIGroups, []string{"coordination.k8s.io"}) || !slices.Equal(r.Resources, []string{"leases"}) {
			t.Errorf("Role rule %+v: want leases of coordination.k8s.io only", r)
		}
		for _, v := range r.Verbs {
			if !slices.Contains([]string{"get", "list", "create", "update"}, v) {
				t.Errorf("Role allows %q on leases; the slots need get, list, create and update", v)
			}
		}
	}
	var rb struct {
		RoleRef  struct{ Kind, Name string } `json:"roleRef"`
		Subjects []struct{ Kind, Name, Namespace string }
	}
	if o := find(t, objs, "RoleBinding", "imagedrop-shared-import-slots", &rb); o.Metadata.Namespace != "imagedrop" {
		t.Errorf("RoleBinding namespace = %q, want imagedrop", o.Metadata.Namespace)
	}
	if rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != "imagedrop-shared-import-slots" ||
		len(rb.Subjects) != 1 || rb.Subjects[0] != (struct{ Kind, Name, Namespace string }{"ServiceAccount", "imagedrop", "imagedrop"}) {
		t.Errorf("RoleBinding = %+v, want the Role bound to ServiceAccount imagedrop/imagedrop", rb)
	}

	ds, c, cfg := daemonPod(t, objs)
	spec := ds.Spec.Template.Spec
	checkEnvParses(t, cfg)
	if !slices.ContainsFunc(c.VolumeMounts, func(m volumeMount) bool {
		return m.Name == "kube-api-access" && m.MountPath == "/var/run/secrets/kubernetes.io/serviceaccount"
	}) {
		t.Error("the pod mounts no service account token: without API access the limit is off")
	}
	if got := cfg.env["IMAGEDROP_NODE_NAME"]; got != "node-from-downward-api" {
		t.Errorf("IMAGEDROP_NODE_NAME = %q, want it from spec.nodeName", got)
	}
	if n, err := strconv.Atoi(cfg.get("shared-import-slots")); err != nil || n < 1 {
		t.Errorf("shared-import-slots = %q, want a limit", cfg.get("shared-import-slots"))
	}
	dir := cfg.get("rescan-dir")
	if dir != "/var/lib/imagedrop/shared" {
		t.Fatalf("rescan-dir = %q, want /var/lib/imagedrop/shared", dir)
	}
	host, m, v := hostPathFor(t, spec, c, dir)
	if host != "" || v.NFS == nil || !v.NFS.ReadOnly || !m.ReadOnly {
		t.Errorf("rescan dir %s: mount %+v, volume %+v; want a read-only NFS volume", dir, m, v)
	}
	// The rest of the base is untouched.
	if _, m, _ := hostPathFor(t, spec, c, "/var/lib/imagedrop/images"); !m.ReadOnly {
		t.Error("the images dir lost its readOnly mount")
	}
}
