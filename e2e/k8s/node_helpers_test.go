package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// The startup taint, condition and label that deploy/base's admission
// policy lets imagedrop change.
const (
	startupTaint = "imagedrop.io/preloading"
	conditionTyp = "ImagesPreloaded"
	preloadLabel = "imagedrop.io/preloaded"
	otherTaint   = "example.com/dedicated"
	otherLabel   = "example.com/pool"
)

// createNode creates a Node object, as kubelet would register it with
// --register-with-taints: the startup taint and another one, a label of
// someone else's, and a Ready condition.
func createNode(ctx context.Context, t *testing.T, k *harness.Kubernetes, name string) {
	t.Helper()
	node := fmt.Sprintf(`{"apiVersion":"v1","kind":"Node","metadata":{"name":%q,"labels":{%q:"blue"}},
"spec":{"taints":[{"key":%q,"effect":"NoSchedule"},{"key":%q,"value":"gpu","effect":"NoSchedule"}]}}`,
		name, otherLabel, startupTaint, otherTaint)
	if out, err := k.Kubectl(ctx, []byte(node), "create", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	ready := `{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status"}]}}`
	if out, err := k.Kubectl(ctx, nil, "patch", "node", name, "--subresource", "status", "--type", "strategic", "-p", ready); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// serviceAccountKubeconfig makes what the DaemonSet's pod on node has: a
// Pod of the imagedrop ServiceAccount bound to node, and a token bound to
// that Pod (so it names the node); it returns a kubeconfig with that token.
// Without a node, the token is bound to nothing.
func serviceAccountKubeconfig(ctx context.Context, t *testing.T, k *harness.Kubernetes, node string) string {
	t.Helper()
	args := []string{"-n", "imagedrop", "create", "token", "imagedrop", "--duration", "1h"}
	if node != "" {
		pod := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"imagedrop-%[1]s","namespace":"imagedrop"},
"spec":{"nodeName":%[1]q,"serviceAccountName":"imagedrop","automountServiceAccountToken":false,
"containers":[{"name":"imagedrop","image":%[2]q}]}}`, node, imagedropImage)
		if out, err := k.Kubectl(ctx, []byte(pod), "apply", "-f", "-"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		args = append(args, "--bound-object-kind", "Pod", "--bound-object-name", "imagedrop-"+node)
	}
	token, err := k.Kubectl(ctx, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: imagedrop, user: {token: %q}}]
contexts: [{name: local, context: {cluster: local, user: imagedrop}}]
current-context: local
`, k.Server, strings.TrimSpace(token))
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// kubeClient is a client-go client from a kubeconfig.
func kubeClient(t *testing.T, kubeconfig string) kubernetes.Interface {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.Timeout = 10 * time.Second
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func getNodeObject(ctx context.Context, k *harness.Kubernetes, name string) (corev1.Node, error) {
	var n corev1.Node
	err := getJSON(ctx, k, &n, "get", "node", name)
	return n, err
}

func condition(n corev1.Node, typ string) (corev1.NodeCondition, bool) {
	i := slices.IndexFunc(n.Status.Conditions, func(c corev1.NodeCondition) bool { return string(c.Type) == typ })
	if i < 0 {
		return corev1.NodeCondition{}, false
	}
	return n.Status.Conditions[i], true
}

func hasTaint(n corev1.Node, key string) bool {
	return slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == key })
}

// waitCondition waits until the node's imagedrop condition has reason
// (and, if message is not "", a message containing it).
func waitCondition(ctx context.Context, t *testing.T, k *harness.Kubernetes, node, reason, message string) corev1.Node {
	t.Helper()
	var n corev1.Node
	waitFor(ctx, t, node+" condition "+reason, func() error {
		var err error
		if n, err = getNodeObject(ctx, k, node); err != nil {
			return err
		}
		c, ok := condition(n, conditionTyp)
		if !ok || c.Reason != reason || !strings.Contains(c.Message, message) {
			return fmt.Errorf("condition %+v, want reason %s, message with %q", c, reason, message)
		}
		return nil
	})
	return n
}

// nodeEvents returns the Events about node, as kubectl get events lists them.
func nodeEvents(ctx context.Context, k *harness.Kubernetes, node string) ([]corev1.Event, error) {
	var list corev1.EventList
	err := getJSON(ctx, k, &list, "get", "events", "-A", "--field-selector", "involvedObject.kind=Node,involvedObject.name="+node)
	return list.Items, err
}

// waitEvent waits until an Event about node has reason and a message
// containing message, and returns it.
func waitEvent(ctx context.Context, t *testing.T, k *harness.Kubernetes, node, reason, message string) corev1.Event {
	t.Helper()
	var found corev1.Event
	waitFor(ctx, t, node+" Event "+reason, func() error {
		evs, err := nodeEvents(ctx, k, node)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.Reason == reason && strings.Contains(e.Message, message) {
				found = e
				return nil
			}
		}
		return fmt.Errorf("no %s Event with %q among %d", reason, message, len(evs))
	})
	return found
}

// daemon is one `imagedrop watch`.
type daemon struct {
	cmd    *exec.Cmd
	log    *bytes.Buffer
	port   int
	exited chan error
}

// startWatch runs imagedrop watch with args and a metrics port, stopped
// with SIGTERM when the test ends.
func startWatch(t *testing.T, bin string, args ...string) *daemon {
	t.Helper()
	d := &daemon{log: &bytes.Buffer{}, port: freePort(t), exited: make(chan error, 1)}
	d.cmd = exec.Command(bin, append([]string{"watch", "--listen-address", fmt.Sprintf("127.0.0.1:%d", d.port)}, args...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-d.exited:
			if err != nil {
				t.Errorf("imagedrop watch: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = d.cmd.Process.Kill()
			t.Errorf("imagedrop watch did not stop on SIGTERM")
		}
		if t.Failed() {
			t.Logf("--- imagedrop log ---\n%s", lastLines(d.log.String(), 80))
		}
	})
	return d
}

// metric returns the value of a sample (name and labels as exposed).
func (d *daemon) metric(ctx context.Context, sample string) (string, error) {
	b, err := getNode(ctx, "127.0.0.1", d.port, "/metrics")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, sample+" "); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no %s in /metrics", sample)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// holdFile writes the first half of data to path and touches it every
// 100ms, so imagedrop never finds it settled and its preload waits; release
// writes it whole and stops touching it.
func holdFile(t *testing.T, path string, data []byte) (release func()) {
	t.Helper()
	if err := os.WriteFile(path, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				now := time.Now()
				_ = os.Chtimes(path, now, now)
			}
		}
	}()
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(stop)
			<-stopped
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(func() { once.Do(func() { close(stop); <-stopped }) })
	return release
}
