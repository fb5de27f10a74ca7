package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// kubeConfig is how imagedrop reaches the Kubernetes API. Without a node
// name nothing talks to it.
type kubeConfig struct {
	nodeName   string
	kubeconfig string
}

func (c *kubeConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.nodeName, "node-name", "", "this node's `NAME` (the downward API's spec.nodeName); turns on the node's condition, startup taint removal and Events, and holds its shared-import Leases (empty: reporting off; Leases are held as the host name)")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig `FILE` to reach the API server with (default: the pod's in-cluster config)")
}

func (c *kubeConfig) validate() error {
	if c.kubeconfig != "" {
		if _, err := os.Stat(c.kubeconfig); err != nil {
			return fmt.Errorf("--kubeconfig: %w", err)
		}
	}
	return nil
}

// kubeTimeout bounds each request to the API server: a slow one must not
// hold the node reporter's loop, which retries it later.
const kubeTimeout = 10 * time.Second

// kubeClient returns a client for the API server: from --kubeconfig, or
// the pod's service account.
func kubeClient(cfg kubeConfig) (kubernetes.Interface, error) {
	var rc *rest.Config
	var err error
	if cfg.kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	rc.Timeout = kubeTimeout
	rc.UserAgent = "imagedrop/" + buildVersion()
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return client, nil
}
