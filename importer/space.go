package importer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"time"
)

// spaceCheckInterval is how often a running import checks the free space of
// containerd's root.
const spaceCheckInterval = time.Second

// ErrLowSpace is returned when an import would take the free space of the
// filesystem of containerd's root below --min-free-space. It is transient:
// the node, not the file, is at fault.
var ErrLowSpace = errors.New("not enough free space")

// MinFree is the floor of free space on the filesystem of containerd's root:
// the larger of Percent of its size and Bytes.
type MinFree struct {
	Percent float64
	Bytes   uint64
}

// floor is the free space, in bytes, that must remain on a filesystem of
// total bytes.
func (m MinFree) floor(total uint64) uint64 {
	return max(m.Bytes, uint64(m.Percent/100*float64(total)))
}

// String spells m as --min-free-space takes it: "15%", "10Gi", or both
// joined with "+" when both are set.
func (m MinFree) String() string {
	switch {
	case m.Bytes == 0:
		return fmt.Sprintf("%g%%", m.Percent)
	case m.Percent == 0:
		return fmt.Sprintf("%d bytes", m.Bytes)
	}
	return fmt.Sprintf("%g%% or %d bytes", m.Percent, m.Bytes)
}

// checkSpace returns an ErrLowSpace error if the filesystem holding
// ContainerdRoot has less free space than the floor. A root that does not
// exist disables the check (New warns of it).
func (im *Importer) checkSpace() error {
	if im.cfg.ContainerdRoot == "" {
		return nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(im.cfg.ContainerdRoot, &st); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("free space of containerd root %s: %w", im.cfg.ContainerdRoot, err)
	}
	bsize := uint64(max(st.Bsize, 0))
	total, avail := st.Blocks*bsize, st.Bavail*bsize
	if floor := im.cfg.MinFreeSpace.floor(total); avail < floor {
		return fmt.Errorf("%w: containerd root %s has %d of %d bytes free, below the floor of %d (--min-free-space %s)",
			ErrLowSpace, im.cfg.ContainerdRoot, avail, total, floor, im.cfg.MinFreeSpace)
	}
	return nil
}

// guardSpace checks the free space of containerd's root now and then every
// spaceCheckInterval until the returned stop is called, and cancels the
// returned context with the ErrLowSpace error once it is short. cause
// returns that error, or err when the space was not short.
func (im *Importer) guardSpace(ctx context.Context) (_ context.Context, stop func(), cause func(err error) error, _ error) {
	if err := im.checkSpace(); err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(spaceCheckInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if err := im.checkSpace(); errors.Is(err, ErrLowSpace) {
					cancel(err)
					return
				}
			}
		}
	}()
	stop = func() {
		close(done)
		<-finished
		cancel(nil)
	}
	cause = func(err error) error {
		if c := context.Cause(ctx); err != nil && errors.Is(c, ErrLowSpace) {
			return c
		}
		return err
	}
	return ctx, stop, cause, nil
}
