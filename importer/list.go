package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRINamespace is the containerd namespace the CRI keeps its images in.
// Lists are pulled through the CRI, so they need Config.Namespace to be it.
const CRINamespace = "k8s.io"

// PullOutcomes returns every outcome of a reference, as Observer.ImagePulled
// is told.
func PullOutcomes() []string { return []string{OutcomePulled, OutcomePresent, OutcomeFailure} }

// Outcomes of one reference of a list.
const (
	OutcomePulled  = "pulled"  // pulled from the registry now
	OutcomePresent = "present" // already on the node; nothing pulled
	OutcomeFailure = "failure" // invalid, not found, or the pull failed
)

// ErrReferencesFailed means some references of a list were invalid or
// could not be pulled; the others were pulled and pinned.
var ErrReferencesFailed = errors.New("references failed")

// ReferenceResult is the outcome of one reference of a list.
type ReferenceResult struct {
	Line int `json:"line"`
	// Reference is the normalised reference, or the text of an invalid line.
	Reference string `json:"reference"`
	// Image is the name the image has in containerd, when it succeeded.
	Image   string `json:"image,omitempty"`
	Outcome string `json:"outcome"`
	// Attempts counts the pulls tried (0 when it was present or invalid).
	Attempts int    `json:"attempts,omitempty"`
	Error    string `json:"error,omitempty"`
}

// criImages is the part of the CRI image service that lists use.
type criImages interface {
	ImageStatus(ctx context.Context, in *runtimeapi.ImageStatusRequest, opts ...grpc.CallOption) (*runtimeapi.ImageStatusResponse, error)
	PullImage(ctx context.Context, in *runtimeapi.PullImageRequest, opts ...grpc.CallOption) (*runtimeapi.PullImageResponse, error)
}

var _ criImages = (runtimeapi.ImageServiceClient)(nil)

// ImportList makes the images an image list names present on the node. Each
// reference is looked up with the CRI's ImageStatus and, when absent,
// pulled with its PullImage on containerd's socket, so that containerd's
// registry configuration (mirrors, credentials) applies as for kubelet.
// Present and pulled images are pinned, labelled with the list's file name
// and retagged like archive images. Up to Config.PullConcurrency references
// are pulled at once; transient failures are retried with backoff.
//
// If any line is invalid or any reference fails, the error (wrapping
// ErrReferencesFailed) names each with its line; the references that
// succeeded stay pulled and pinned, and res describes them all.
func (im *Importer) ImportList(ctx context.Context, path string) (res Result, err error) {
	return im.importList(ctx, Input{Path: path})
}

// importList is ImportList of a file found in in.Root (see openInput),
// reporting its progress.
func (im *Importer) importList(ctx context.Context, in Input) (res Result, err error) {
	root, path := in.Root, in.Path
	res = Result{Path: path, Kind: KindList}
	defer func() {
		if err != nil {
			err = fmt.Errorf("import %s: %w", path, err)
		}
	}()
	if im.cfg.Namespace != CRINamespace {
		return res, fmt.Errorf("image lists are pulled through the CRI, which keeps images in namespace %s, but the namespace is %q", CRINamespace, im.cfg.Namespace)
	}
	list, size, verified, err := im.readList(root, path)
	res.Verified = verified
	if err != nil {
		return res, err
	}
	res.BytesRead = size
	var auth pullAuth
	if im.cfg.PullAuthFile != "" {
		if auth, err = loadPullAuth(im.cfg.PullAuthFile); err != nil {
			return res, err
		}
	}
	cri := runtimeapi.NewImageServiceClient(im.conn)

	source := filepath.Base(path)
	p, stop := newPulse(in.Progress, pulseEvery, im.cfg.PullTimeout)
	defer stop()
	refs, names := im.pullEntries(ctx, cri, auth, list.Entries, source, p)
	for _, inv := range list.Invalid {
		refs = append(refs, ReferenceResult{Line: inv.Line, Reference: excerpt(inv.Text), Outcome: OutcomeFailure,
			Error: fmt.Sprintf("invalid reference %s: %v", excerpt(inv.Text), inv.Err)})
	}
	slices.SortFunc(refs, func(a, b ReferenceResult) int { return a.Line - b.Line })
	for _, n := range names {
		res.Images = append(res.Images, n...)
	}
	slices.Sort(res.Images)
	res.Images = slices.Compact(res.Images)
	err = failedReferences(ctx, source, refs)
	res.Counts, res.References, res.ReferencesOmitted = sampleReferences(refs, im.cfg.ListSample)
	return res, err
}

// readList opens, bounds and parses the list at path, found in root, and
// returns it with the file's size. A list over Config.MaxListSize or
// Config.MaxListReferences fails whole, before anything is pulled.
func (im *Importer) readList(root, path string) (List, int64, *Verification, error) {
	f, st, err := openInput(root, path)
	if err != nil {
		return List{}, 0, nil, err
	}
	defer f.Close()
	limit := int64(im.cfg.MaxListSize)
	if st.Size() > limit {
		return List{}, 0, nil, invalid(fmt.Errorf("%w: %d bytes, over --max-list-size (%d bytes)", ErrListTooLarge, st.Size(), limit))
	}
	check, err := im.prepareCheck(root, path, st)
	if err != nil {
		return List{}, 0, nil, err
	}
	defer check.close()
	// The file may grow after the fstat: read one byte past the limit to
	// tell.
	lr := &io.LimitedReader{R: f, N: limit + 1}
	r := io.Reader(lr)
	if check != nil {
		r = io.TeeReader(lr, check)
	}
	list, err := parseList(r, im.cfg.MaxListReferences)
	if err == nil && lr.N == 0 {
		err = invalid(fmt.Errorf("%w: it grew over --max-list-size (%d bytes) while it was read", ErrListTooLarge, limit))
	}
	if err != nil || check == nil {
		return list, st.Size(), nil, err
	}
	// Verified before anything is pulled: its bytes as read, to the end.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return List{}, st.Size(), nil, withoutPath(err)
	}
	v, err := check.verify(filepath.Base(path))
	return list, st.Size(), &v, err
}

// sampleReferences counts the outcomes of refs, which are in line order,
// and keeps at most n of them: the failures first, then the others, in
// line order. It returns the counts, the sample and how many were left out.
func sampleReferences(refs []ReferenceResult, n int) (*ReferenceCounts, []ReferenceResult, int) {
	counts := &ReferenceCounts{}
	keep := make([]bool, len(refs))
	kept := 0
	for i, r := range refs {
		switch r.Outcome {
		case OutcomePulled:
			counts.Pulled++
		case OutcomePresent:
			counts.Present++
		default:
			counts.Failed++
			if kept < n {
				keep[i], kept = true, kept+1
			}
		}
	}
	for i := range refs {
		if kept < n && !keep[i] {
			keep[i], kept = true, kept+1
		}
	}
	var sample []ReferenceResult
	for i, r := range refs {
		if keep[i] {
			sample = append(sample, r)
		}
	}
	return counts, sample, len(refs) - len(sample)
}

// pullEntries makes the references of entries present, up to
// Config.PullConcurrency at once, and returns the result of each and the
// image names each produced, in the order of entries. Once ctx is done, the
// references not yet started fail with its error.
func (im *Importer) pullEntries(ctx context.Context, cri criImages, auth pullAuth, entries []ListEntry, source string, p *pulse) ([]ReferenceResult, [][]string) {
	refs := make([]ReferenceResult, len(entries))
	names := make([][]string, len(entries))
	sem := make(chan struct{}, im.cfg.PullConcurrency)
	var wg sync.WaitGroup
	for i, e := range entries {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			refs[i] = ReferenceResult{Line: e.Line, Reference: e.Reference, Outcome: OutcomeFailure, Error: ctx.Err().Error()}
			continue
		}
		wg.Go(func() {
			log := im.log.With("list", source, "line", e.Line, "reference", e.Reference)
			start := time.Now()
			p.mark()
			rr := im.pullReference(ctx, cri, auth, e, log)
			p.mark()
			<-sem // the CRI is done: the next pull starts while this one is labelled
			if rr.Outcome != OutcomeFailure {
				rr, names[i] = im.labelPulled(ctx, rr, e, source)
			}
			rr.Error = cut(rr.Error, im.cfg.MaxErrorLength)
			refs[i] = rr
			if rr.Outcome == OutcomeFailure {
				return // logged once, with the file's error
			}
			level := slog.LevelInfo
			if rr.Outcome == OutcomePresent {
				level = slog.LevelDebug
			}
			log.Log(ctx, level, "reference_ready", "outcome", rr.Outcome, "image", rr.Image, "attempts", rr.Attempts, "duration", time.Since(start))
		})
	}
	wg.Wait()
	return refs, names
}

// failuresNamed is how many failed references the error of a list names;
// the Result has more.
const failuresNamed = 3

// failedReferences is the error of a list whose references in refs failed,
// naming each with its line of the file source, or nil if none failed.
func failedReferences(ctx context.Context, source string, refs []ReferenceResult) error {
	var failed []string
	n := 0
	for _, r := range refs {
		if r.Outcome != OutcomeFailure {
			continue
		}
		if n++; n <= failuresNamed {
			failed = append(failed, fmt.Sprintf("%s:%d: %s", source, r.Line, r.Error))
		}
	}
	if n == 0 {
		return nil
	}
	if n > failuresNamed {
		failed = append(failed, fmt.Sprintf("and %d more", n-failuresNamed))
	}
	err := fmt.Errorf("%d of %d %w: %s", n, len(refs), ErrReferencesFailed, strings.Join(failed, "; "))
	if ctx.Err() != nil {
		err = errors.Join(ctx.Err(), err)
	}
	return err
}

// pullReference makes one reference present through the CRI and counts
// the pull. Its result's outcome is OutcomeFailure, with the error, if that
// failed.
func (im *Importer) pullReference(ctx context.Context, cri criImages, auth pullAuth, e ListEntry, log *slog.Logger) ReferenceResult {
	start := time.Now()
	outcome, attempts, err := im.pull(ctx, cri, auth.forReference(e.Reference), e.Reference, log)
	rr := ReferenceResult{Line: e.Line, Reference: e.Reference, Outcome: outcome, Attempts: attempts}
	if err != nil {
		im.obs.ImagePulled(OutcomeFailure, time.Since(start))
		rr.Outcome, rr.Error = OutcomeFailure, err.Error()
		return rr
	}
	im.obs.ImagePulled(outcome, time.Since(start))
	return rr
}

// labelPulled pins, labels and retags the image a reference was pulled
// (or found) as. It returns the reference's result, failed if that did not
// work, and the image names it set.
func (im *Importer) labelPulled(ctx context.Context, rr ReferenceResult, e ListEntry, source string) (ReferenceResult, []string) {
	ctx = namespaces.WithNamespace(ctx, CRINamespace)
	img, err := im.client.ImageService().Get(ctx, e.Image)
	if err != nil {
		rr.Error = fmt.Sprintf("%s is %s but containerd has no image %s: %v", e.Reference, rr.Outcome, e.Image, err)
		rr.Outcome = OutcomeFailure
		return rr, nil
	}
	names, _, err := im.store(ctx, []images.Image{img}, source, fromPull)
	if err != nil {
		rr.Outcome, rr.Error = OutcomeFailure, fmt.Sprintf("%s: label and retag: %v", e.Reference, err)
		return rr, nil
	}
	rr.Image = e.Image
	return rr, names
}

// pull asks the CRI whether ref is present and pulls it if not, retrying
// transient failures, all within Config.PullTimeout. It reports whether
// the image was pulled or present and how many pulls it tried.
func (im *Importer) pull(ctx context.Context, cri criImages, auth *runtimeapi.AuthConfig, ref string, log *slog.Logger) (outcome string, attempts int, err error) {
	ctx, cancel := context.WithTimeout(ctx, im.cfg.PullTimeout)
	defer cancel()
	spec := &runtimeapi.ImageSpec{Image: ref}
	st, err := cri.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec})
	if err != nil {
		return "", 0, fmt.Errorf("%s: CRI image status: %s", ref, grpcMessage(err))
	}
	if st.GetImage() != nil {
		return OutcomePresent, 0, nil
	}
	for {
		attempts++
		_, err := cri.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec, Auth: auth})
		if err == nil {
			return OutcomePulled, attempts, nil
		}
		switch {
		case isNotFound(err):
			return "", attempts, fmt.Errorf("%s: not found (not retried): %s", ref, grpcMessage(err))
		case ctx.Err() != nil:
			return "", attempts, fmt.Errorf("%s: gave up after %d attempts (--pull-timeout %s): %s", ref, attempts, im.cfg.PullTimeout, grpcMessage(err))
		case !isTransient(err):
			return "", attempts, fmt.Errorf("%s: %s", ref, grpcMessage(err))
		case attempts > im.cfg.PullRetries:
			return "", attempts, fmt.Errorf("%s: gave up after %d attempts: %s", ref, attempts, grpcMessage(err))
		}
		delay := im.pullBackoff(attempts)
		log.Warn("pull_failed_retrying", "attempt", attempts, "delay", delay, "err", grpcMessage(err))
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return "", attempts, fmt.Errorf("%s: gave up after %d attempts (%v): %s", ref, attempts, context.Cause(ctx), grpcMessage(err))
		}
	}
}

// pullBackoff is the delay before retry n of a pull (1-based): the
// WithPullBackoff policy, or Config.PullBackoff every time without one.
func (im *Importer) pullBackoff(n int) time.Duration {
	if im.backoff == nil {
		return im.cfg.PullBackoff
	}
	return im.backoff(n)
}

// The CRI hands registry errors over gRPC as text (mostly code Unknown),
// so beyond the code the message is all there is to classify them by.
var (
	notFoundMessages  = []string{"not found", "manifest unknown", "name unknown", "404 not found"}
	transientMessages = []string{
		"connection refused", "connection reset", "timeout", "eof",
		"no route to host", "network is unreachable", "temporary failure in name resolution",
		"500 internal server error", "502 bad gateway", "503 service unavailable", "504 gateway timeout",
		"429 too many requests", "toomanyrequests",
	}
)

// isNotFound reports a reference the registry does not have.
func isNotFound(err error) bool {
	if status.Code(err) == codes.NotFound || errdefs.IsNotFound(err) {
		return true
	}
	msg := strings.ToLower(grpcMessage(err))
	return slices.ContainsFunc(notFoundMessages, func(s string) bool { return strings.Contains(msg, s) })
}

// isTransient reports a failure that may go away: the registry or
// containerd unreachable, a timeout, a 5xx or a rate limit.
func isTransient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return true
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented:
		return false
	}
	msg := strings.ToLower(grpcMessage(err))
	return slices.ContainsFunc(transientMessages, func(s string) bool { return strings.Contains(msg, s) })
}

// grpcMessage is err's message without gRPC's "rpc error: code = … desc =".
func grpcMessage(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Message()
	}
	return err.Error()
}
