package importer

import (
	"context"
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"golang.org/x/sync/errgroup"
)

// unpackJob is one distinct image to unpack and the chain IDs of its
// layers, base first, as containerd names their snapshots.
type unpackJob struct {
	img    images.Image
	chains []digest.Digest
}

// unpack unpacks each distinct image whose content for the node's platform
// is complete, so that the first container start does not pay for it: up
// to Config.UnpackConcurrency images at once, scheduled by unpackPlan so
// that no layer chain is extracted twice. It returns how many images it
// unpacked. The first failure cancels the unpacks still running and is
// returned once they have stopped.
func (im *Importer) unpack(ctx context.Context, found []images.Image) (int, error) {
	jobs, err := im.unpackJobs(ctx, found)
	if err != nil {
		return 0, err
	}
	g, gctx := errgroup.WithContext(ctx)
	plan := newUnpackPlan(jobs)
	done := make(chan int, len(jobs)) // never blocks a finished unpack
	running, n := 0, 0
	for !plan.finished() || running > 0 {
		for running < im.cfg.UnpackConcurrency {
			i, ok := plan.next()
			if !ok {
				break
			}
			running++
			g.Go(func() error {
				err := im.unpackOne(gctx, jobs[i].img)
				done <- i
				return err
			})
		}
		if running == 0 {
			break // unreachable: with nothing running, nothing waits
		}
		select {
		case i := <-done:
			running--
			plan.release(i)
			n++
		case <-gctx.Done():
		}
		if gctx.Err() != nil { // a failure, or ctx's end
			break
		}
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return n, nil
}

// unpackOne unpacks img into the configured snapshotter.
func (im *Importer) unpackOne(ctx context.Context, img images.Image) error {
	if err := containerd.NewImageWithPlatform(im.client, img, im.platform).Unpack(ctx, im.cfg.Snapshotter); err != nil {
		return fmt.Errorf("unpack %s into %s: %w", img.Name, im.cfg.Snapshotter, err)
	}
	return nil
}

// unpackJobs returns the distinct images of found that are complete for
// the node's platform, with their layer chains (from the diff IDs of their
// configs, as containerd computes them).
func (im *Importer) unpackJobs(ctx context.Context, found []images.Image) ([]unpackJob, error) {
	cs := im.client.ContentStore()
	seen := map[digest.Digest]bool{}
	var jobs []unpackJob
	for _, img := range found {
		if seen[img.Target.Digest] {
			continue
		}
		seen[img.Target.Digest] = true
		available, _, _, missing, err := images.Check(ctx, cs, img.Target, im.platform)
		if err != nil {
			return nil, fmt.Errorf("check %s: %w", img.Name, err)
		}
		if !available || len(missing) > 0 {
			im.log.Debug("image_incomplete_for_platform_not_unpacked", "image", img.Name)
			continue
		}
		config, err := images.Config(ctx, cs, img.Target, im.platform)
		if err != nil {
			return nil, fmt.Errorf("config of %s: %w", img.Name, err)
		}
		diffIDs, err := images.RootFS(ctx, cs, config)
		if err != nil {
			return nil, fmt.Errorf("diff IDs of %s: %w", img.Name, err)
		}
		jobs = append(jobs, unpackJob{img: img, chains: identity.ChainIDs(diffIDs)})
	}
	return jobs, nil
}

// unpackPlan orders the unpacks of an archive's images so that no layer
// chain is extracted twice: an image starts only when none of its chains
// is being extracted by an image already running. The chains it shares
// with images that finished are in the snapshotter then, and containerd's
// Unpack skips them; the others it claims until it finishes. Chain IDs name
// a layer and every layer under it, so images that share a base share a
// prefix of their chains, and the first of them to start unpacks the base
// alone while the others wait for it.
type unpackPlan struct {
	jobs    []unpackJob
	pending []int                 // indexes of jobs not started, in order
	owner   map[digest.Digest]int // chain → the running job extracting it
	done    map[digest.Digest]bool
}

func newUnpackPlan(jobs []unpackJob) *unpackPlan {
	p := &unpackPlan{jobs: jobs, owner: map[digest.Digest]int{}, done: map[digest.Digest]bool{}}
	for i := range jobs {
		p.pending = append(p.pending, i)
	}
	return p
}

func (p *unpackPlan) finished() bool { return len(p.pending) == 0 }

// next returns the first pending job none of whose chains is being
// extracted, and claims its chains that are not yet done.
func (p *unpackPlan) next() (int, bool) {
	for k, i := range p.pending {
		if p.blocked(i) {
			continue
		}
		for _, c := range p.jobs[i].chains {
			if !p.done[c] {
				p.owner[c] = i
			}
		}
		p.pending = append(p.pending[:k], p.pending[k+1:]...)
		return i, true
	}
	return 0, false
}

func (p *unpackPlan) blocked(i int) bool {
	for _, c := range p.jobs[i].chains {
		if _, ok := p.owner[c]; ok {
			return true
		}
	}
	return false
}

// release marks the chains job i claimed as done: it has unpacked them.
func (p *unpackPlan) release(i int) {
	for _, c := range p.jobs[i].chains {
		if o, ok := p.owner[c]; ok && o == i {
			delete(p.owner, c)
			p.done[c] = true
		}
	}
}
