package main

import (
	"flag"
	"fmt"
	"os"
	"time"

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

// restConfig is how to reach the API server: from --kubeconfig, or the
// pod's service account. Callers build only the typed clients they use: the
// whole clientset would link every API group's client into the binary (and
// into its memory), for the two groups imagedrop talks to.
func (c kubeConfig) restConfig() (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if c.kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	rc.Timeout = kubeTimeout
	rc.UserAgent = "imagedrop/" + buildVersion()
	return rc, nil
}
