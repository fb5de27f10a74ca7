package main

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestSocketAccess checks the one dial's verdicts that root can see: a
// socket that is not there, one that answers, and addresses it leaves to the
// client. (Permission denied needs a user other than root: e2e
// TestImportNonRoot.)
func TestSocketAccess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock := filepath.Join(dir, "c.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	for _, addr := range []string{sock, "unix://" + sock, "tcp://127.0.0.1:1"} {
		if err := socketAccess(addr); err != nil {
			t.Errorf("socketAccess(%s) = %v, want nil", addr, err)
		}
	}
	missing := filepath.Join(dir, "none.sock")
	err = socketAccess(missing)
	if err == nil || !strings.Contains(err.Error(), missing+": no such file") || !strings.Contains(err.Error(), "/run/k3s/containerd/containerd.sock") {
		t.Errorf("socketAccess(missing) = %v, want no such file and the k3s hint", err)
	}
}
