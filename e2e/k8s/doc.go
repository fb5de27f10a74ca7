// Package k8s proves the DaemonSet in deploy/ on a real single-node
// Kubernetes: etcd, kube-apiserver, kube-controller-manager, kube-scheduler
// and kubelet on a private containerd 2.x, all started by the test (see
// e2e/setup.sh for the binaries). It is skipped with -short.
package k8s
