package harness

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// StopAPIServer stops kube-apiserver, as an outage would, and returns a
// function that starts it again with the same arguments (same port, same
// etcd) and waits until it is ready.
func (k *Kubernetes) StopAPIServer(t testing.TB) (start func(ctx context.Context)) {
	t.Helper()
	const name = "kube-apiserver"
	i := -1
	for j, p := range k.procs {
		if p.name == name {
			i = j
		}
	}
	if i < 0 {
		t.Fatalf("no %s to stop", name)
	}
	p := k.procs[i]
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err // for stop, which waits again
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		p.exited <- <-p.exited
	}
	return func(ctx context.Context) {
		t.Helper()
		logf, err := os.OpenFile(p.log, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer logf.Close()
		q := &process{name: name, log: p.log, exited: make(chan error, 1)}
		q.cmd = exec.Command(p.cmd.Path, p.cmd.Args[1:]...)
		q.cmd.Stdout, q.cmd.Stderr = logf, logf
		q.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := startTied(q.cmd, q.exited); err != nil {
			t.Fatalf("restart %s: %v", name, err)
		}
		k.procs[i] = q
		k.waitHTTP(ctx, t, name, k.Server+"/readyz")
	}
}
