package harness

import (
	"context"
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// Leftovers lists, as containerd's APIs report them, what an import may
// leave behind in namespace ns: every lease, every ingest (upload in
// progress) and every active snapshot of snapshotter. A namespace of a test
// whose imports all ended holds none.
func Leftovers(ctx context.Context, client *containerd.Client, ns, snapshotter string) ([]string, error) {
	ctx = namespaces.WithNamespace(ctx, ns)
	var out []string
	ls, err := client.LeasesService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	for _, l := range ls {
		out = append(out, fmt.Sprintf("lease %s %v", l.ID, l.Labels))
	}
	ingests, err := client.ContentStore().ListStatuses(ctx)
	if err != nil {
		return nil, fmt.Errorf("list ingests: %w", err)
	}
	for _, s := range ingests {
		out = append(out, fmt.Sprintf("ingest %s (%d bytes)", s.Ref, s.Offset))
	}
	err = client.SnapshotService(snapshotter).Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind == snapshots.KindActive {
			out = append(out, "active snapshot "+info.Name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk snapshots: %w", err)
	}
	return out, nil
}
