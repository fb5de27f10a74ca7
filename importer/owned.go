package importer

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/containerd/errdefs"
)

// Owned returns the names of the images that carry imagedrop's source label
// (LabelSource), sorted: every image imagedrop imported or pulled and still
// answers for. With source non-empty, only those whose label is source (the
// base name of the file they came from).
func (im *Importer) Owned(ctx context.Context, source string) ([]string, error) {
	ctx = im.nsContext(ctx)
	imgs, err := im.client.ImageService().List(ctx, `labels."`+LabelSource+`"`)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var names []string
	for _, img := range imgs {
		if src, ok := img.Labels[LabelSource]; ok && (source == "" || src == source) {
			names = append(names, img.Name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// Release removes imagedrop's pin and source labels from the named images
// and leaves everything else (other labels, target, content) as it is, so
// kubelet's image GC may collect them once unused. It returns how many
// images it changed; missing images are ignored.
func (im *Importer) Release(ctx context.Context, names []string) (int, error) {
	ctx = im.nsContext(ctx)
	is := im.client.ImageService()
	var errs []error
	n := 0
	for _, name := range names {
		img, err := is.Get(ctx, name)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("get image %s: %w", name, err))
			continue
		}
		var paths []string
		for _, key := range []string{LabelPinned, LabelSource} {
			if _, ok := img.Labels[key]; ok {
				delete(img.Labels, key)
				paths = append(paths, "labels."+key)
			}
		}
		if len(paths) == 0 {
			continue
		}
		if _, err := is.Update(ctx, img, paths...); err != nil {
			if !errdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("release image %s: %w", name, err))
			}
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
