package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// runtimeEnv is one containerd the cases run against.
type runtimeEnv struct {
	bin    string // containerd's binary
	c      *harness.Containerd
	client *containerd.Client
	ctr    string // ctr of the same containerd build
	major  int
	seq    int // namespaces made so far
}

// namespace is a containerd namespace no run of e has used, for case key.
func (e *runtimeEnv) namespace(key string) string {
	e.seq++
	return fmt.Sprintf("bench-%s-%d", key, e.seq)
}

// startRuntime starts a private containerd from bin, its directory under
// parent ("": the default temporary directory), and connects to it.
// Stop it with stop.
func startRuntime(ctx context.Context, bin, parent string) (*runtimeEnv, error) {
	ctr := filepath.Join(filepath.Dir(bin), "ctr")
	if _, err := os.Stat(ctr); err != nil {
		return nil, fmt.Errorf("%w: %v", errNoCtr, err)
	}
	c, err := harness.StartContainerdIn(ctx, bin, parent)
	if err != nil {
		return nil, err
	}
	client, err := containerd.New(c.Address)
	if err != nil {
		_ = c.Stop()
		return nil, err
	}
	return &runtimeEnv{bin: bin, c: c, client: client, ctr: ctr, major: c.Major}, nil
}

func (e *runtimeEnv) stop() {
	_ = e.client.Close()
	_ = e.c.Stop()
}

// ctrLocalLabel is how the report names ctr importing without the transfer
// service.
func (e *runtimeEnv) ctrLocalLabel() string {
	if e.major >= 2 {
		return "ctr import --local"
	}
	return "ctr import (1.6: always local)"
}

// unpacked checks that the run left a committed overlayfs snapshot in ns.
func (e *runtimeEnv) unpacked(ctx context.Context, ns string) error {
	n := 0
	err := e.client.SnapshotService("overlayfs").Walk(namespaces.WithNamespace(ctx, ns), func(context.Context, snapshots.Info) error {
		n++
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk snapshots: %w", err)
	}
	if n == 0 {
		return errors.New("no snapshot after an import with unpack")
	}
	return nil
}

// errNoCtr is startRuntime's error when ctr is not beside containerd.
var errNoCtr = errors.New("no ctr beside containerd")
