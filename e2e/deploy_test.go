package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// The deployment tests render deploy/ with kubectl's built-in kustomize and
// check what a node would get: that the daemon's configuration (env twins of
// its flags, or the flags' defaults) points at the host paths it must see,
// through the pod's volume mounts, and that the pod is locked down. They need
// kubectl but no cluster and no containerd.

const deployDir = "../deploy"

// k8sObject is one rendered document; raw keeps all of it for typed decoding.
type k8sObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	raw json.RawMessage
}

// The subset of the Kubernetes API types the tests look at. Decoding is
// strict about types (an env value must be a string, a port an int or a
// string), as the API server is.
type (
	daemonSet struct {
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			UpdateStrategy struct {
				Type          string `json:"type"`
				RollingUpdate *struct {
					MaxUnavailable any `json:"maxUnavailable"`
				} `json:"rollingUpdate"`
			} `json:"updateStrategy"`
			Template struct {
				Metadata struct {
					Labels      map[string]string `json:"labels"`
					Annotations map[string]string `json:"annotations"`
				} `json:"metadata"`
				Spec podSpec `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	podSpec struct {
		ServiceAccountName            string `json:"serviceAccountName"`
		AutomountServiceAccountToken  *bool  `json:"automountServiceAccountToken"`
		PriorityClassName             string `json:"priorityClassName"`
		TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds"`
		Tolerations                   []struct {
			Key      string `json:"key"`
			Operator string `json:"operator"`
			Effect   string `json:"effect"`
		} `json:"tolerations"`
		SecurityContext struct {
			SeccompProfile *seccompProfile `json:"seccompProfile"`
		} `json:"securityContext"`
		Containers []container `json:"containers"`
		Volumes    []volume    `json:"volumes"`
	}
	seccompProfile struct {
		Type string `json:"type"`
	}
	container struct {
		Name  string `json:"name"`
		Image string `json:"image"`
		Args  []string
		Env   []struct {
			Name      string          `json:"name"`
			Value     string          `json:"value"`
			ValueFrom json.RawMessage `json:"valueFrom"`
		} `json:"env"`
		Ports []struct {
			Name          string `json:"name"`
			ContainerPort int    `json:"containerPort"`
		} `json:"ports"`
		StartupProbe   *probe `json:"startupProbe"`
		LivenessProbe  *probe `json:"livenessProbe"`
		ReadinessProbe *probe `json:"readinessProbe"`
		Resources      struct {
			Requests map[string]string `json:"requests"`
			Limits   map[string]string `json:"limits"`
		} `json:"resources"`
		SecurityContext *struct {
			RunAsUser                *int64 `json:"runAsUser"`
			Privileged               *bool  `json:"privileged"`
			AllowPrivilegeEscalation *bool  `json:"allowPrivilegeEscalation"`
			ReadOnlyRootFilesystem   *bool  `json:"readOnlyRootFilesystem"`
			Capabilities             struct {
				Add  []string `json:"add"`
				Drop []string `json:"drop"`
			} `json:"capabilities"`
			SeccompProfile *seccompProfile `json:"seccompProfile"`
		} `json:"securityContext"`
		VolumeMounts []volumeMount `json:"volumeMounts"`
	}
	probe struct {
		HTTPGet *struct {
			Path string `json:"path"`
			Port any    `json:"port"` // int or port name
		} `json:"httpGet"`
		PeriodSeconds    int `json:"periodSeconds"`
		FailureThreshold int `json:"failureThreshold"`
	}
	volumeMount struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
		ReadOnly  bool   `json:"readOnly"`
		SubPath   string `json:"subPath"`
	}
	volume struct {
		Name     string `json:"name"`
		HostPath *struct {
			Path string `json:"path"`
			Type string `json:"type"`
		} `json:"hostPath"`
		ConfigMap *struct {
			Name     string `json:"name"`
			Optional *bool  `json:"optional"`
		} `json:"configMap"`
		NFS *struct {
			ReadOnly bool `json:"readOnly"`
		} `json:"nfs"`
		PersistentVolumeClaim *struct {
			ReadOnly bool `json:"readOnly"`
		} `json:"persistentVolumeClaim"`
	}
	service struct {
		Spec struct {
			ClusterIP string            `json:"clusterIP"`
			Selector  map[string]string `json:"selector"`
			Ports     []struct {
				Name       string `json:"name"`
				Port       int    `json:"port"`
				TargetPort any    `json:"targetPort"`
			} `json:"ports"`
		} `json:"spec"`
	}
	configMap struct {
		Data map[string]string `json:"data"`
	}
)

// requireKubectl returns kubectl's path; without it the test is skipped, or
// fails under CI.
func requireKubectl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("kubectl")
	if err != nil {
		if harness.InCI() {
			t.Fatalf("kubectl is required under CI: %v", err)
		}
		t.Skipf("kubectl not available: %v", err)
	}
	return p
}

// kubectl runs kubectl offline: its kubeconfig does not exist, so nothing
// can reach a cluster by accident.
func kubectl(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(requireKubectl(t), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(t.TempDir(), "no-kubeconfig"))
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes()
}

// toObjects converts a YAML stream to objects. `kubectl patch --local` with
// an empty patch decodes YAML exactly as kubectl apply would before sending
// it, and prints it as JSON without asking a server.
func toObjects(t *testing.T, yamlDocs []byte) []k8sObject {
	t.Helper()
	out := kubectl(t, yamlDocs, "patch", "--local", "-f", "-", "--type", "merge", "-p", "{}", "-o", "json")
	var objs []k8sObject
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode kubectl output: %v\n%s", err, out)
		}
		var o k8sObject
		if err := json.Unmarshal(raw, &o); err != nil {
			t.Fatalf("decode object: %v\n%s", err, raw)
		}
		if o.Kind == "List" {
			var l struct{ Items []json.RawMessage }
			if err := json.Unmarshal(raw, &l); err != nil {
				t.Fatalf("decode list: %v", err)
			}
			for _, it := range l.Items {
				var o k8sObject
				if err := json.Unmarshal(it, &o); err != nil {
					t.Fatalf("decode list item: %v\n%s", err, it)
				}
				o.raw = it
				objs = append(objs, o)
			}
			continue
		}
		o.raw = raw
		objs = append(objs, o)
	}
	return objs
}

// render builds a kustomization directory.
func render(t *testing.T, dir string) []k8sObject {
	t.Helper()
	objs := toObjects(t, kubectl(t, nil, "kustomize", dir))
	if len(objs) == 0 {
		t.Fatalf("kubectl kustomize %s rendered nothing", dir)
	}
	return objs
}

// find returns the one object of a kind and name, decoded into v.
func find(t *testing.T, objs []k8sObject, kind, name string, v any) k8sObject {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Metadata.Name == name {
			dec := json.NewDecoder(bytes.NewReader(o.raw))
			if err := dec.Decode(v); err != nil {
				t.Fatalf("decode %s %s: %v", kind, name, err)
			}
			return o
		}
	}
	t.Fatalf("no %s %q rendered", kind, name)
	return k8sObject{}
}

// watchFlags parses `imagedrop watch -h`: every flag name and its default
// as printed ("" when none is printed).
func watchFlags(t *testing.T) map[string]string {
	t.Helper()
	stdout, _, code := imagedrop(t, nil, "watch", "-h") // help asked for is on stdout
	if code != 0 {
		t.Fatalf("imagedrop watch -h: exit %d\n%s", code, stdout)
	}
	name := regexp.MustCompile(`^  -([a-z0-9-]+)`)
	def := regexp.MustCompile(`\(default "?(.*?)"?\)$`)
	flags := map[string]string{}
	last := ""
	for _, line := range strings.Split(stdout, "\n") {
		if m := name.FindStringSubmatch(line); m != nil {
			last = m[1]
			flags[last] = ""
		} else if m := def.FindStringSubmatch(line); m != nil && last != "" {
			flags[last] = m[1]
		}
	}
	if len(flags) < 5 {
		t.Fatalf("found only %d flags in imagedrop watch -h:\n%s", len(flags), stdout)
	}
	return flags
}

// envName is the environment twin of a flag, as cmd/imagedrop defines it.
func flagEnvName(flag string) string {
	return "IMAGEDROP_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// daemonConfig is what the daemon in the pod will run with: the env twins
// set in the DaemonSet, else the flags' defaults.
type daemonConfig struct {
	env   map[string]string // IMAGEDROP_* as set in the pod
	flags map[string]string // flag → default
}

func (c daemonConfig) get(flag string) string {
	if v, ok := c.env[flagEnvName(flag)]; ok {
		return v
	}
	return c.flags[flag]
}

// mountFor resolves a path inside the container to the volume mount that
// holds it (the longest mountPath that is the path or above it).
func mountFor(c container, p string) (volumeMount, bool) {
	var best volumeMount
	found := false
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" {
			continue
		}
		mp := path.Clean(m.MountPath)
		if (p == mp || strings.HasPrefix(p, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best.MountPath) {
			best, found = m, true
		}
	}
	return best, found
}

// hostPathFor resolves a path in the container to the host path it shows,
// the mount and the volume; hostPath is "" for non-hostPath volumes.
func hostPathFor(t *testing.T, spec podSpec, c container, p string) (string, volumeMount, volume) {
	t.Helper()
	p = path.Clean(p)
	m, ok := mountFor(c, p)
	if !ok {
		t.Fatalf("%s is on the container's own filesystem: no volume mount holds it", p)
	}
	i := slices.IndexFunc(spec.Volumes, func(v volume) bool { return v.Name == m.Name })
	if i < 0 {
		t.Fatalf("volume mount %s names volume %q, which the pod does not have", m.MountPath, m.Name)
	}
	v := spec.Volumes[i]
	if v.HostPath == nil {
		return "", m, v
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(p, path.Clean(m.MountPath)), "/")
	return path.Join(v.HostPath.Path, rel), m, v
}

// daemonPod decodes the DaemonSet and returns its pod spec, its imagedrop
// container and the configuration the daemon will run with.
func daemonPod(t *testing.T, objs []k8sObject) (daemonSet, container, daemonConfig) {
	t.Helper()
	var ds daemonSet
	find(t, objs, "DaemonSet", "imagedrop", &ds)
	cs := ds.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("DaemonSet has %d containers, want 1", len(cs))
	}
	c := cs[0]
	cfg := daemonConfig{env: map[string]string{}, flags: watchFlags(t)}
	for _, e := range c.Env {
		if !strings.HasPrefix(e.Name, "IMAGEDROP_") {
			continue
		}
		if len(e.ValueFrom) > 0 {
			// Only the node's name, which any flag that takes a string
			// accepts; the test stands in a name for it.
			var from struct {
				FieldRef struct{ FieldPath string } `json:"fieldRef"`
			}
			if err := json.Unmarshal(e.ValueFrom, &from); err != nil || from.FieldRef.FieldPath != "spec.nodeName" {
				t.Errorf("%s comes from valueFrom %s; the test can check only spec.nodeName", e.Name, e.ValueFrom)
			}
			cfg.env[e.Name] = "node-from-downward-api"
			continue
		}
		cfg.env[e.Name] = e.Value
	}
	return ds, c, cfg
}

func TestDeployBase(t *testing.T) {
	t.Parallel()
	objs := render(t, deployDir)

	clusterScoped := map[string]bool{"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true,
		"ValidatingAdmissionPolicy": true, "ValidatingAdmissionPolicyBinding": true}
	for _, o := range objs {
		if !clusterScoped[o.Kind] && o.Metadata.Namespace != "imagedrop" {
			t.Errorf("%s %s is in namespace %q, want imagedrop", o.Kind, o.Metadata.Name, o.Metadata.Namespace)
		}
	}
	find(t, objs, "Namespace", "imagedrop", &struct{}{})
	var sa struct {
		AutomountServiceAccountToken *bool `json:"automountServiceAccountToken"`
	}
	find(t, objs, "ServiceAccount", "imagedrop", &sa)
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount automountServiceAccountToken = %v, want false", sa.AutomountServiceAccountToken)
	}

	ds, c, cfg := daemonPod(t, objs)
	spec := ds.Spec.Template.Spec

	t.Run("env twins name real flags", func(t *testing.T) {
		if len(cfg.env) == 0 {
			t.Fatal("the DaemonSet sets no IMAGEDROP_* variable")
		}
		checkEnvParses(t, cfg)
		if got := cfg.env["IMAGEDROP_LOG_FORMAT"]; got != "json" {
			t.Errorf("IMAGEDROP_LOG_FORMAT = %q, want json", got)
		}
	})

	t.Run("containerd socket", func(t *testing.T) {
		addr := strings.TrimPrefix(cfg.get("containerd-address"), "unix://")
		host, m, v := hostPathFor(t, spec, c, addr)
		if host != "/run/containerd/containerd.sock" {
			t.Errorf("containerd address %s is host path %q, want /run/containerd/containerd.sock", addr, host)
		}
		if v.HostPath != nil && v.HostPath.Type != "Socket" && v.HostPath.Type != "Directory" {
			t.Errorf("containerd volume type = %q, want Socket or Directory (fail fast when containerd is elsewhere)", v.HostPath.Type)
		}
		if v.HostPath != nil && v.HostPath.Type == "Directory" && !m.ReadOnly {
			t.Errorf("containerd directory mount %s is writable, want readOnly", m.MountPath)
		}
	})

	t.Run("images dirs", func(t *testing.T) {
		dirs := strings.Split(cfg.env["IMAGEDROP_IMAGES_DIR"], ",")
		if dirs[0] == "" {
			t.Fatal("IMAGEDROP_IMAGES_DIR is not set")
		}
		var sawHost, sawLists bool
		for _, d := range dirs {
			d = strings.TrimSpace(d)
			host, m, v := hostPathFor(t, spec, c, d)
			if !m.ReadOnly {
				t.Errorf("images dir %s is mounted writable; imagedrop never writes there", d)
			}
			switch {
			case host == "/var/lib/imagedrop/images":
				sawHost = true
				if v.HostPath.Type != "DirectoryOrCreate" {
					t.Errorf("images hostPath type = %q, want DirectoryOrCreate", v.HostPath.Type)
				}
			case v.ConfigMap != nil && v.ConfigMap.Name == "imagedrop-lists":
				sawLists = true
				if v.ConfigMap.Optional == nil || !*v.ConfigMap.Optional {
					t.Errorf("ConfigMap volume imagedrop-lists is not optional")
				}
			default:
				t.Errorf("images dir %s is neither /var/lib/imagedrop/images nor the imagedrop-lists ConfigMap", d)
			}
		}
		if !sawHost || !sawLists {
			t.Errorf("IMAGEDROP_IMAGES_DIR=%q: watches host dir %v, lists ConfigMap %v; want both", cfg.env["IMAGEDROP_IMAGES_DIR"], sawHost, sawLists)
		}
	})

	t.Run("state file", func(t *testing.T) {
		sf := cfg.get("state-file")
		host, m, v := hostPathFor(t, spec, c, path.Dir(sf))
		if v.HostPath == nil || m.ReadOnly {
			t.Fatalf("state file %s: its directory must be a writable hostPath mount", sf)
		}
		if host != "/var/lib/imagedrop/state" || v.HostPath.Type != "DirectoryOrCreate" {
			t.Errorf("state dir is host %q (%s), want /var/lib/imagedrop/state (DirectoryOrCreate)", host, v.HostPath.Type)
		}
		for _, other := range spec.Volumes {
			if other.HostPath != nil && other.Name != m.Name && !slices.ContainsFunc(c.VolumeMounts, func(vm volumeMount) bool {
				return vm.Name == other.Name && vm.ReadOnly
			}) {
				t.Errorf("hostPath volume %s (%s) is mounted writable; only the state dir should be", other.Name, other.HostPath.Path)
			}
		}
	})

	t.Run("listens on the node's IP only", func(t *testing.T) {
		host, _, _ := strings.Cut(cfg.get("listen-address"), ":")
		i := slices.IndexFunc(c.Env, func(e struct {
			Name      string          `json:"name"`
			Value     string          `json:"value"`
			ValueFrom json.RawMessage `json:"valueFrom"`
		}) bool {
			return e.Name == "HOST_IP"
		})
		var from struct {
			FieldRef struct {
				FieldPath string `json:"fieldPath"`
			} `json:"fieldRef"`
		}
		if i >= 0 {
			_ = json.Unmarshal(c.Env[i].ValueFrom, &from)
		}
		if host != "$(HOST_IP)" || from.FieldRef.FieldPath != "status.hostIP" {
			t.Errorf("listen address %q, HOST_IP from %q; want $(HOST_IP) from the downward API's status.hostIP", cfg.get("listen-address"), from.FieldRef.FieldPath)
		}
	})

	t.Run("probes", func(t *testing.T) {
		_, portStr, ok := strings.Cut(cfg.get("listen-address"), ":")
		port, err := strconv.Atoi(portStr)
		if !ok || err != nil {
			t.Fatalf("listen address %q has no port", cfg.get("listen-address"))
		}
		i := slices.IndexFunc(c.Ports, func(p struct {
			Name          string `json:"name"`
			ContainerPort int    `json:"containerPort"`
		}) bool {
			return p.Name == "metrics"
		})
		if i < 0 || c.Ports[i].ContainerPort != port {
			t.Fatalf("want container port metrics = %d (the listen address), got %+v", port, c.Ports)
		}
		for _, p := range []struct {
			name  string
			probe *probe
			path  string
		}{
			{"startupProbe", c.StartupProbe, "/healthz"},
			{"livenessProbe", c.LivenessProbe, "/healthz"},
			{"readinessProbe", c.ReadinessProbe, "/readyz"},
		} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("%s: want an httpGet probe", p.name)
				continue
			}
			if p.probe.HTTPGet.Path != p.path {
				t.Errorf("%s path = %q, want %q", p.name, p.probe.HTTPGet.Path, p.path)
			}
			if got := p.probe.HTTPGet.Port; got != "metrics" && got != float64(port) {
				t.Errorf("%s port = %v, want metrics or %d", p.name, got, port)
			}
		}
		if sp := c.StartupProbe; sp != nil {
			if budget := time.Duration(max(sp.PeriodSeconds, 10)*max(sp.FailureThreshold, 3)) * time.Second; budget < 2*time.Minute {
				t.Errorf("startupProbe allows %s, want at least 2m", budget)
			}
		}
	})

	t.Run("security", func(t *testing.T) {
		sc := c.SecurityContext
		if sc == nil {
			t.Fatal("container has no securityContext")
		}
		isTrue := func(b *bool) bool { return b != nil && *b }
		if !isTrue(sc.ReadOnlyRootFilesystem) {
			t.Error("readOnlyRootFilesystem is not true")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Error("allowPrivilegeEscalation is not false")
		}
		if isTrue(sc.Privileged) {
			t.Error("container is privileged")
		}
		if !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("capabilities = drop %v add %v, want drop [ALL] and nothing added", sc.Capabilities.Drop, sc.Capabilities.Add)
		}
		if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
			t.Errorf("runAsUser = %v, want an explicit 0 (the containerd socket is root's)", sc.RunAsUser)
		}
		seccomp := sc.SeccompProfile
		if seccomp == nil {
			seccomp = spec.SecurityContext.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != "RuntimeDefault" {
			t.Errorf("seccompProfile = %+v, want RuntimeDefault", seccomp)
		}
		if spec.ServiceAccountName != "imagedrop" || spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("pod serviceAccountName %q, automountServiceAccountToken %v; want imagedrop and false",
				spec.ServiceAccountName, spec.AutomountServiceAccountToken)
		}
	})

	t.Run("scheduling and shutdown", func(t *testing.T) {
		if !slices.ContainsFunc(spec.Tolerations, func(tl struct {
			Key      string `json:"key"`
			Operator string `json:"operator"`
			Effect   string `json:"effect"`
		}) bool {
			return tl.Key == "" && tl.Operator == "Exists" && tl.Effect == ""
		}) {
			t.Errorf("tolerations %+v: want one that tolerates every taint (operator Exists, no key)", spec.Tolerations)
		}
		if spec.PriorityClassName != "system-node-critical" {
			t.Errorf("priorityClassName = %q, want system-node-critical", spec.PriorityClassName)
		}
		if ds.Spec.UpdateStrategy.Type != "RollingUpdate" {
			t.Errorf("updateStrategy = %q, want RollingUpdate", ds.Spec.UpdateStrategy.Type)
		}
		grace, err := time.ParseDuration(cfg.get("shutdown-grace"))
		if err != nil {
			t.Fatalf("shutdown grace: %v", err)
		}
		// After the grace, jobs are cancelled, the state is saved and the
		// HTTP server stops (up to 5s): the kubelet must wait longer.
		tgp := time.Duration(30) * time.Second // the API's default
		if spec.TerminationGracePeriodSeconds != nil {
			tgp = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
		}
		if tgp <= grace+5*time.Second {
			t.Errorf("terminationGracePeriodSeconds = %s, want more than the shutdown grace %s + 5s", tgp, grace)
		}
		for _, r := range []string{"cpu", "memory"} {
			if c.Resources.Requests[r] == "" {
				t.Errorf("no %s request", r)
			}
		}
		if c.Resources.Limits["memory"] == "" {
			t.Error("no memory limit")
		}
	})

	t.Run("metrics service", func(t *testing.T) {
		var svc service
		find(t, objs, "Service", "imagedrop-metrics", &svc)
		if svc.Spec.ClusterIP != "None" {
			t.Errorf("clusterIP = %q, want None (headless)", svc.Spec.ClusterIP)
		}
		if len(svc.Spec.Selector) == 0 {
			t.Fatal("Service selects nothing")
		}
		for k, v := range svc.Spec.Selector {
			if ds.Spec.Template.Metadata.Labels[k] != v {
				t.Errorf("Service selector %s=%s does not match the pod labels %v", k, v, ds.Spec.Template.Metadata.Labels)
			}
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort != "metrics" {
			t.Errorf("Service ports = %+v, want one with targetPort metrics", svc.Spec.Ports)
		}
	})
}

// checkEnvParses checks that every IMAGEDROP_* variable of the pod is the
// twin of a flag of imagedrop watch, and parses as it.
func checkEnvParses(t *testing.T, cfg daemonConfig) {
	t.Helper()
	known := map[string]bool{}
	for f := range cfg.flags {
		known[flagEnvName(f)] = true
	}
	env := []string{"PATH=" + os.Getenv("PATH")}
	for name, v := range cfg.env {
		if !known[name] {
			t.Errorf("%s is no flag of imagedrop watch (flags: %v)", name, slices.Sorted(maps.Keys(cfg.flags)))
		}
		env = append(env, name+"="+v)
	}
	// Every value must parse as its flag: the environment is applied
	// before -h is seen, and a bad value exits 2.
	cmd := exec.Command(imagedropBin, "watch", "-h")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("imagedrop watch -h with the DaemonSet's environment: %v\n%s", err, out)
	}
}

func TestDeployK3sExample(t *testing.T) {
	t.Parallel()
	objs := render(t, filepath.Join(deployDir, "examples", "k3s"))
	ds, c, cfg := daemonPod(t, objs)
	spec := ds.Spec.Template.Spec
	addr := strings.TrimPrefix(cfg.get("containerd-address"), "unix://")
	if !strings.HasPrefix(addr, "/run/k3s/") {
		t.Errorf("containerd address = %q, want k3s's socket", addr)
	}
	if host, _, _ := hostPathFor(t, spec, c, addr); host != "/run/k3s/containerd/containerd.sock" {
		t.Errorf("containerd address %s is host path %q, want /run/k3s/containerd/containerd.sock", addr, host)
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil && strings.HasPrefix(v.HostPath.Path, "/run/containerd") {
			t.Errorf("volume %s still mounts %s", v.Name, v.HostPath.Path)
		}
	}
	// The rest of the base is untouched.
	if _, m, _ := hostPathFor(t, spec, c, "/var/lib/imagedrop/images"); !m.ReadOnly {
		t.Error("the images dir lost its readOnly mount")
	}
}

func TestDeployListsExample(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(deployDir, "examples", "imagedrop-lists.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs := toObjects(t, b)
	var cm configMap
	o := find(t, objs, "ConfigMap", "imagedrop-lists", &cm)
	if o.Metadata.Namespace != "imagedrop" {
		t.Errorf("namespace = %q, want imagedrop", o.Metadata.Namespace)
	}
	if len(cm.Data) == 0 {
		t.Error("ConfigMap has no lists")
	}
	for k := range cm.Data {
		if !strings.HasSuffix(k, ".txt") {
			t.Errorf("key %q: imagedrop reads only *.txt lists", k)
		}
	}
}
