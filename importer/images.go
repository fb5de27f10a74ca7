package importer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// normalizeReference turns "busybox" into "docker.io/library/busybox:latest"
// and checks that s is a full reference.
func normalizeReference(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty reference")
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return "", err
	}
	return reference.TagNameOnly(named).String(), nil
}

// retagNames returns name under each extra registry, as k3s does for its
// system-default-registry: docker.io/library/busybox:1.36 under
// registry.local:5000 is registry.local:5000/library/busybox:1.36. A registry
// the image already lives under is skipped.
func retagNames(name string, registries []string) ([]string, error) {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", name, err)
	}
	domain, path := reference.Domain(named), reference.Path(named)
	suffix := strings.TrimPrefix(name, named.Name())
	var out []string
	for _, r := range registries {
		if r == domain || strings.HasPrefix(named.Name(), r+"/") {
			continue
		}
		n := r + "/" + path + suffix
		if _, err := reference.ParseNormalizedNamed(n); err != nil {
			return nil, fmt.Errorf("retag %s under %s: %w", name, r, err)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// origin says where the images handed to store come from.
type origin int

const (
	// fromArchive: read from an archive, new to containerd until stored;
	// store unpacks them.
	fromArchive origin = iota
	// fromPull: pulled by the CRI, which stored and unpacked them; store
	// updates them.
	fromPull
)

// store names found (and their retags) in the image store with imagedrop's
// labels, adds distribution-source labels to their content and unpacks
// archive images for the node's platform. It returns every name it
// set, sorted, and how many images were unpacked. If it fails part way, the
// images it created are removed again; images that existed before are left.
// Labels a found image already has (a CRI pull's) are kept beside imagedrop's.
func (im *Importer) store(ctx context.Context, found []images.Image, source string, from origin) (names []string, unpacked int, err error) {
	labels := map[string]string{LabelSource: source, labelCRIManaged: "managed"}
	if im.cfg.Pin {
		labels[LabelPinned] = LabelPinnedValue
	}

	all := make([]images.Image, 0, len(found))
	for _, img := range found {
		own := labels
		if len(img.Labels) > 0 {
			own = maps.Clone(img.Labels)
			maps.Copy(own, labels)
		}
		all = append(all, images.Image{Name: img.Name, Target: img.Target, Labels: own})
		tags, err := retagNames(img.Name, im.cfg.ExtraRegistries)
		if err != nil {
			im.obs.Retagged(ResultFailure)
			return nil, 0, err
		}
		for _, t := range tags {
			all = append(all, images.Image{Name: t, Target: img.Target, Labels: labels})
		}
	}
	all = dedupeImages(all)

	if err := im.labelDistributionSources(ctx, found, all); err != nil {
		return nil, 0, err
	}

	var created []string
	defer func() {
		if err != nil {
			im.rollback(ctx, created)
		}
	}()
	isRetag := func(name string) bool {
		return !slices.ContainsFunc(found, func(f images.Image) bool { return f.Name == name })
	}
	for _, img := range all {
		// A pulled image exists under its own name: update it first.
		isNew, err := im.upsert(ctx, img, from == fromPull && !isRetag(img.Name))
		if isRetag(img.Name) {
			if err != nil {
				im.obs.Retagged(ResultFailure)
			} else {
				im.obs.Retagged(ResultSuccess)
			}
		}
		if err != nil {
			return nil, 0, err
		}
		if isNew {
			created = append(created, img.Name)
		}
		names = append(names, img.Name)
	}

	if from == fromArchive && im.cfg.Unpack {
		if unpacked, err = im.unpack(ctx, found); err != nil {
			return nil, 0, err
		}
	}
	slices.Sort(names)
	return names, unpacked, nil
}

// upsert creates img, or points an existing image of that name at its target
// with its labels. It reports whether the image is new. When img is likely
// to exist, it is updated first and created only if it is gone.
func (im *Importer) upsert(ctx context.Context, img images.Image, exists bool) (bool, error) {
	is := im.client.ImageService()
	if exists {
		_, err := is.Update(ctx, img, "target", "labels")
		if err == nil {
			return false, nil
		}
		if !errdefs.IsNotFound(err) {
			return false, fmt.Errorf("update image %s: %w", img.Name, err)
		}
	}
	_, err := is.Create(ctx, img)
	if err == nil {
		return true, nil
	}
	if !errdefs.IsAlreadyExists(err) {
		return false, fmt.Errorf("create image %s: %w", img.Name, err)
	}
	if _, err := is.Update(ctx, img, "target", "labels"); err != nil {
		return false, fmt.Errorf("update image %s: %w", img.Name, err)
	}
	return false, nil
}

func (im *Importer) rollback(ctx context.Context, names []string) {
	ctx = context.WithoutCancel(ctx)
	for _, n := range names {
		if err := im.client.ImageService().Delete(ctx, n); err != nil && !errdefs.IsNotFound(err) {
			im.log.Warn("failed_import_image_remove_failed", "image", n, "err", err)
		}
	}
}

// labelDistributionSources sets containerd.io/distribution.source.<registry>
// on every blob of each image of found for each name in all it is stored
// under, as a pull would: <registry> is the registry's host without its
// port, like containerd's. A blob images share (a base layer) is labelled
// once, with every repository; the blobs are labelled a few at once.
func (im *Importer) labelDistributionSources(ctx context.Context, found, all []images.Image) error {
	cs := im.client.ContentStore()
	var order []digest.Digest
	want := map[digest.Digest]map[string][]string{} // blob → label key → repositories
	for _, img := range found {
		descs, err := imageBlobs(ctx, cs, img)
		if err != nil {
			return err
		}
		sources := distributionSources(img, all)
		for _, d := range descs {
			if want[d.Digest] == nil {
				want[d.Digest] = map[string][]string{}
				order = append(order, d.Digest)
			}
			for key, repos := range sources {
				for _, r := range repos {
					if !slices.Contains(want[d.Digest][key], r) {
						want[d.Digest][key] = append(want[d.Digest][key], r)
					}
				}
			}
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(labelWriters)
	for _, d := range order {
		g.Go(func() error { return labelSources(gctx, cs, d, want[d]) })
	}
	return g.Wait()
}

// labelWriters is how many blobs labelDistributionSources labels at once.
const labelWriters = 4

// distributionSources are the repositories of the names in all that img's
// target is stored under, by label key.
func distributionSources(img images.Image, all []images.Image) map[string][]string {
	sources := map[string][]string{} // label key → repositories
	for _, a := range all {
		if a.Target.Digest != img.Target.Digest {
			continue
		}
		named, err := reference.ParseNormalizedNamed(a.Name)
		if err != nil {
			continue
		}
		host := (&url.URL{Host: reference.Domain(named)}).Hostname()
		key := labelDistributionSource + host
		sources[key] = append(sources[key], reference.Path(named))
	}
	return sources
}

// imageBlobs returns the descriptors of img's target and of everything it
// references that the store holds manifests of.
func imageBlobs(ctx context.Context, cs content.Store, img images.Image) ([]ocispec.Descriptor, error) {
	var descs []ocispec.Descriptor
	walk := func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		descs = append(descs, desc)
		children, err := images.Children(ctx, cs, desc)
		if errdefs.IsNotFound(err) {
			return nil, images.ErrSkipDesc
		}
		return children, err
	}
	if err := images.Walk(ctx, images.HandlerFunc(walk), img.Target); err != nil {
		return nil, fmt.Errorf("walk %s: %w", img.Name, err)
	}
	return descs, nil
}

// labelSources adds the repositories of sources (by label key) to the
// labels of the blob d, up to containerd's bound on a label.
func labelSources(ctx context.Context, cs content.Store, d digest.Digest, sources map[string][]string) error {
	info, err := cs.Info(ctx, d)
	if errdefs.IsNotFound(err) {
		return nil // a platform or layer that is not in the archive
	}
	if err != nil {
		return fmt.Errorf("content info %s: %w", d, err)
	}
	update := content.Info{Digest: d, Labels: map[string]string{}}
	var paths []string
	for key, repos := range sources {
		have := splitNonEmpty(info.Labels[key])
		merged := have
		size := len(key) + len(info.Labels[key])
		for _, r := range repos {
			if slices.Contains(merged, r) {
				continue
			}
			// The label is a hint for mirrors; once containerd's bound
			// on a label is reached (a blob that thousands of
			// repositories share), it keeps the repositories it has.
			if size+len(r)+1 > maxLabelSize {
				break
			}
			merged = append(merged, r)
			size += len(r) + 1
		}
		if len(merged) != len(have) {
			update.Labels[key] = strings.Join(merged, ",")
			paths = append(paths, "labels."+key)
		}
	}
	if len(paths) == 0 {
		return nil
	}
	if _, err := cs.Update(ctx, update, paths...); err != nil {
		return fmt.Errorf("label content %s: %w", d, err)
	}
	return nil
}

// maxLabelSize is containerd's bound on a label's key and value together.
const maxLabelSize = 4096

func splitNonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// Exist reports whether every named image is in containerd.
func (im *Importer) Exist(ctx context.Context, names []string) (bool, error) {
	ctx = im.nsContext(ctx)
	for _, n := range names {
		if _, err := im.client.ImageService().Get(ctx, n); err != nil {
			if errdefs.IsNotFound(err) {
				return false, nil
			}
			return false, fmt.Errorf("get image %s: %w", n, err)
		}
	}
	return true, nil
}

// Unpin removes the pin label from the named images so kubelet may collect
// them. Images are never deleted; missing ones are ignored.
func (im *Importer) Unpin(ctx context.Context, names []string) error {
	ctx = im.nsContext(ctx)
	var errs []error
	for _, n := range names {
		img, err := im.client.ImageService().Get(ctx, n)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("get image %s: %w", n, err))
			continue
		}
		if _, ok := img.Labels[LabelPinned]; !ok {
			continue
		}
		delete(img.Labels, LabelPinned)
		if _, err := im.client.ImageService().Update(ctx, img, "labels."+LabelPinned); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("unpin image %s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}
