package harness

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
)

// SandboxImages are the pod sandbox images a node of StartKubernetes asks
// for: kubelet 1.37's and containerd 2.x's default. Neither can be pulled
// here; a node needs them imported (a program that waits for SIGTERM will
// do, see e2e/k8s/testdata/pause).
func SandboxImages() []string {
	return []string{"registry.k8s.io/pause:3.10.2", "registry.k8s.io/pause:3.10.1"}
}

// WriteCNIConfig writes a node's pod network into confDir (the CRI's CNI
// configuration directory, Containerd.Dir/cni): a bridge named bridge with
// host-local addresses from subnet, their leases in ipamDir, and port
// mappings (containerd adds the loopback itself).
func WriteCNIConfig(confDir, ipamDir, bridge, subnet string) error {
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %[1]q,
  "plugins": [
    {
      "type": "bridge",
      "bridge": %[1]q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %[2]q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %[3]q
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, bridge, subnet, ipamDir)
	return os.WriteFile(filepath.Join(confDir, "10-"+bridge+".conflist"), []byte(conf), 0o644)
}

// RemoveBridge deletes the bridge the CNI plugin made on the host for
// WriteCNIConfig's network, if there is one.
func RemoveBridge(bridge string) error {
	if _, err := net.InterfaceByName(bridge); err != nil {
		return nil
	}
	if out, err := exec.Command("ip", "link", "delete", bridge).CombinedOutput(); err != nil {
		return fmt.Errorf("delete bridge %s: %w %s", bridge, err, out)
	}
	return nil
}

// MadeDirs returns a function that removes those of dirs (deepest first)
// that do not exist now, once they are empty: for the directories the CNI
// plugins make on the host (/var/lib/cni/results, /var/lib/cni).
func MadeDirs(dirs ...string) func() {
	var made []string
	for _, d := range dirs {
		if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
			made = append(made, d)
		}
	}
	return func() {
		for _, d := range made {
			_ = os.Remove(d) // only if empty
		}
	}
}
