package importer_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/imagedrop/imagedrop/e2e/harness"
	"github.com/imagedrop/imagedrop/importer"
)

// listEnv is one list test's view of the shared containerd's CRI namespace
// and of its own registry. Image names start with a prefix unique to the
// test, since every test pulls into k8s.io.
type listEnv struct {
	t      *testing.T
	client *containerd.Client
	reg    *harness.Registry
	dir    string
	prefix string
	logs   *lockedBuffer
	obs    *recordingObserver
}

func newListEnv(t *testing.T) *listEnv {
	t.Helper()
	c := harness.RequireContainerd(t)
	return &listEnv{
		t: t, client: c.Client(t), reg: harness.RequireRegistry(t), dir: t.TempDir(),
		prefix: harness.Namespace(t), logs: &lockedBuffer{}, obs: &recordingObserver{},
	}
}

func (e *listEnv) ctx() context.Context {
	return namespaces.WithNamespace(context.Background(), importer.CRINamespace)
}

// importer pulls with retries 50 ms apart unless mutate says otherwise.
func (e *listEnv) importer(mutate ...func(*importer.Config)) *importer.Importer {
	e.t.Helper()
	cfg := importer.DefaultConfig()
	cfg.PullBackoff = 50 * time.Millisecond
	for _, m := range mutate {
		m(&cfg)
	}
	im, err := importer.New(e.client, cfg, slog.New(slog.NewTextHandler(e.logs, nil)), importer.WithObserver(e.obs))
	if err != nil {
		e.t.Fatalf("importer.New: %v", err)
	}
	return im
}

// push builds a small image unique to the test and pushes it to the
// registry as prefix/name:1; it returns the image and its manifest digest.
func (e *listEnv) push(name string) (*harness.Image, digest.Digest) {
	e.t.Helper()
	img := harness.NewImage(name, node, map[string]string{"id": e.prefix + "/" + name})
	return img, e.reg.Push(e.t, e.prefix+"/"+name+":1", img)
}

func (e *listEnv) ref(host, name string) string { return host + "/" + e.prefix + "/" + name + ":1" }

func (e *listEnv) write(name, text string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// checkImage asserts that containerd's CRI namespace has name with want's
// config, pinned and labelled with source.
func (e *listEnv) checkImage(name string, want *harness.Image, source string) {
	e.t.Helper()
	meta, err := e.client.ImageService().Get(e.ctx(), name)
	if err != nil {
		e.t.Errorf("get image %s: %v", name, err)
		return
	}
	cfg, err := containerd.NewImageWithPlatform(e.client, meta, platforms.Only(want.Platform)).Config(e.ctx())
	if err != nil {
		e.t.Errorf("%s: config: %v", name, err)
	} else if cfg.Digest != want.ConfigDigest() {
		e.t.Errorf("%s: config digest = %s, want %s", name, cfg.Digest, want.ConfigDigest())
	}
	if got := meta.Labels[importer.LabelPinned]; got != importer.LabelPinnedValue {
		e.t.Errorf("%s: label %s = %q, want %q", name, importer.LabelPinned, got, importer.LabelPinnedValue)
	}
	if got := meta.Labels[importer.LabelSource]; got != source {
		e.t.Errorf("%s: label %s = %q, want %q", name, importer.LabelSource, got, source)
	}
}

func (e *listEnv) hasImage(name string) bool {
	_, err := e.client.ImageService().Get(e.ctx(), name)
	return err == nil
}

// outcomes maps the line of each reference of res to its outcome.
func outcomes(res importer.Result) map[int]string {
	out := map[int]string{}
	for _, r := range res.References {
		out[r.Line] = r.Outcome
	}
	return out
}

// recordingObserver counts ImagePulled results and refusals.
type recordingObserver struct {
	mu      sync.Mutex
	pulled  map[string]int
	refused []string
}

func (o *recordingObserver) Refused(reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.refused = append(o.refused, reason)
}

func (o *recordingObserver) refusals() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.refused)
}

func (o *recordingObserver) BytesRead(int64)         {}
func (o *recordingObserver) ImagesImported(int)      {}
func (o *recordingObserver) Retagged(string)         {}
func (o *recordingObserver) Verified(string, string) {}
func (o *recordingObserver) counts() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.pulled)
}

func (o *recordingObserver) ImagePulled(result string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.pulled == nil {
		o.pulled = map[string]int{}
	}
	o.pulled[result]++
}

func TestImportListPulledThenPresent(t *testing.T) {
	t.Parallel()
	e := newListEnv(t)
	a, _ := e.push("a")
	b, bDigest := e.push("b")
	h := e.reg.Host
	bByDigest := h + "/" + e.prefix + "/b@" + bDigest.String()
	list := e.write("apps.txt", strings.Join([]string{
		"# images for the apps",
		"  " + e.ref(h, "a") + "   # the first app",
		"",
		bByDigest,
		e.ref(h, "a"), // duplicate
		"Not/A/Valid:Reference",
		e.ref(h, "a") + " trailing words",
		"",
	}, "\r\n"))
	im := e.importer(func(c *importer.Config) { c.ExtraRegistries = []string{"registry.local:5000"} })

	res, err := im.ImportList(context.Background(), list)
	if !errors.Is(err, importer.ErrReferencesFailed) {
		t.Fatalf("ImportList error = %v, want ErrReferencesFailed", err)
	}
	t.Logf("error: %v", err)
	for _, want := range []string{list, "apps.txt:6: ", "Not/A/Valid:Reference", "apps.txt:7: ", "unexpected text after the reference"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if got, want := outcomes(res), map[int]string{2: "pulled", 4: "pulled", 6: "failure", 7: "failure"}; !maps.Equal(got, want) {
		t.Errorf("outcomes by line = %v, want %v", got, want)
	}
	aName := e.ref(h, "a")
	bName := bByDigest
	retag := func(n string) string { return "registry.local:5000" + strings.TrimPrefix(n, h) }
	wantImages := []string{aName, bName, retag(aName), retag(bName)}
	slices.Sort(wantImages)
	if !slices.Equal(res.Images, wantImages) {
		t.Errorf("images = %v, want %v", res.Images, wantImages)
	}
	for _, n := range []string{aName, retag(aName)} {
		e.checkImage(n, a, "apps.txt")
	}
	for _, n := range []string{bName, retag(bName)} {
		e.checkImage(n, b, "apps.txt")
	}
	if got := e.obs.counts(); got["pulled"] != 2 || got["failure"] != 0 {
		t.Errorf("observed pulls = %v, want 2 pulled", got)
	}

	// Listed again (from another file), both are present and nothing is pulled.
	again := e.write("again.txt", aName+"\n"+bName+"\n")
	res, err = im.ImportList(context.Background(), again)
	if err != nil {
		t.Fatalf("second ImportList: %v", err)
	}
	if got, want := outcomes(res), map[int]string{1: "present", 2: "present"}; !maps.Equal(got, want) {
		t.Errorf("second outcomes = %v, want %v", got, want)
	}
	if got := e.obs.counts(); got["pulled"] != 2 || got["present"] != 2 {
		t.Errorf("observed pulls = %v, want 2 pulled and 2 present", got)
	}
	e.checkImage(aName, a, "again.txt")
}

// The distribution-source labels imagedrop sets on a pulled image's blobs
// are the ones containerd's own pull sets (registry host without its port),
// so labelling an image the CRI pulled changes none of its blobs.
func TestImportListKeepsPullLabels(t *testing.T) {
	t.Parallel()
	e := newListEnv(t)
	e.push("labels")
	ref := e.ref(e.reg.Host, "labels")
	cri := runtimeapi.NewImageServiceClient(e.client.Conn().(grpc.ClientConnInterface))
	if _, err := cri.PullImage(e.ctx(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		t.Fatalf("CRI pull: %v", err)
	}
	blobLabels := func() map[string]map[string]string {
		img, err := e.client.ImageService().Get(e.ctx(), ref)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]map[string]string{}
		cs := e.client.ContentStore()
		err = images.Walk(e.ctx(), images.HandlerFunc(func(ctx context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
			info, err := cs.Info(ctx, d.Digest)
			if err != nil {
				return nil, err
			}
			out[d.Digest.String()] = info.Labels
			return images.Children(ctx, cs, d)
		}), img.Target)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	pulled := blobLabels()
	if len(pulled) < 3 {
		t.Fatalf("pulled image has %d blobs, want manifest, config and layer", len(pulled))
	}
	res, err := e.importer().ImportList(context.Background(), e.write("labels.txt", ref+"\n"))
	if err != nil {
		t.Fatalf("ImportList: %v", err)
	}
	if got := outcomes(res); got[1] != importer.OutcomePresent {
		t.Fatalf("outcome = %v, want present", got)
	}
	after := blobLabels()
	for d, want := range pulled {
		if !maps.Equal(after[d], want) {
			t.Errorf("blob %s: labels after imagedrop = %v, after the CRI pull = %v", d, after[d], want)
		}
	}
}

func TestImportListMissingImage(t *testing.T) {
	t.Parallel()
	e := newListEnv(t)
	good, _ := e.push("good")
	list := e.write("mixed.txt", e.ref(e.reg.Host, "missing")+"\n"+e.ref(e.reg.Host, "good")+"\n")
	// A retry would wait ten minutes and time the test out.
	im := e.importer(func(c *importer.Config) { c.PullBackoff = 10 * time.Minute })

	res, err := im.ImportList(context.Background(), list)
	if !errors.Is(err, importer.ErrReferencesFailed) || !strings.Contains(err.Error(), "mixed.txt:1: ") ||
		!strings.Contains(err.Error(), "not found") {
		t.Fatalf("ImportList error = %v, want mixed.txt:1 not found", err)
	}
	t.Logf("error: %v", err)
	if got, want := outcomes(res), map[int]string{1: "failure", 2: "pulled"}; !maps.Equal(got, want) {
		t.Errorf("outcomes = %v, want %v", got, want)
	}
	if r := res.References[0]; r.Attempts != 1 {
		t.Errorf("missing image tried %d times, want 1", r.Attempts)
	}
	e.checkImage(e.ref(e.reg.Host, "good"), good, "mixed.txt")
	if e.hasImage(e.ref(e.reg.Host, "missing")) {
		t.Error("missing image exists")
	}
	if got := e.obs.counts(); got["pulled"] != 1 || got["failure"] != 1 {
		t.Errorf("observed pulls = %v, want 1 pulled, 1 failure", got)
	}
}

func TestImportListRegistryDownThenUp(t *testing.T) {
	t.Parallel()
	e := newListEnv(t)
	img, _ := e.push("late")
	list := e.write("late.txt", e.ref(e.reg.Host, "late")+"\n")
	im := e.importer(func(c *importer.Config) { c.PullRetries = 100; c.PullBackoff = 100 * time.Millisecond })
	e.reg.Stop()

	type outcome struct {
		res importer.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := im.ImportList(context.Background(), list)
		done <- outcome{res, err}
	}()
	waitFor(t, 60*time.Second, "a failed pull to be retried", func() bool {
		return strings.Contains(e.logs.String(), "pull_failed_retrying")
	})
	e.reg.Start()

	var got outcome
	select {
	case got = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("ImportList did not return within 2 minutes of the registry's restart")
	}
	if got.err != nil {
		t.Fatalf("ImportList: %v\nlogs:\n%s", got.err, e.logs.String())
	}
	if r := got.res.References[0]; r.Outcome != "pulled" || r.Attempts < 2 {
		t.Errorf("reference = %+v, want pulled after at least 2 attempts", r)
	}
	t.Logf("logs:\n%s", e.logs.String())
	if !strings.Contains(e.logs.String(), "connection refused") {
		t.Errorf("retry log does not say why:\n%s", e.logs.String())
	}
	e.checkImage(e.ref(e.reg.Host, "late"), img, "late.txt")
}

func TestImportListConcurrency(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		concurrency int
		images      int
		hold        time.Duration // how long a request waits for another pull
		wantOverlap bool
	}{
		{concurrency: 3, images: 3, hold: 30 * time.Second, wantOverlap: true},
		{concurrency: 1, images: 2, hold: 200 * time.Millisecond, wantOverlap: false},
	} {
		t.Run(fmt.Sprintf("concurrency-%d", tt.concurrency), func(t *testing.T) {
			t.Parallel()
			e := newListEnv(t)
			var proxy *harness.RegistryProxy
			// Until two images have been pulled at once, each request waits
			// for another image's request (or for hold to pass), so pulls
			// that run concurrently are seen to overlap however they are
			// scheduled, and pulls in turn are not.
			proxy = harness.StartRegistryProxy(t, e.reg, harness.ProxyOptions{Hold: func(*http.Request) {
				deadline := time.Now().Add(tt.hold)
				for proxy.MaxReposInFlight() < 2 && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
			}})
			var lines []string
			for i := range tt.images {
				name := fmt.Sprintf("c%d", i)
				e.push(name)
				lines = append(lines, e.ref(proxy.Host, name))
			}
			list := e.write("many.txt", strings.Join(lines, "\n"))
			im := e.importer(func(c *importer.Config) { c.PullConcurrency = tt.concurrency })
			res, err := im.ImportList(context.Background(), list)
			if err != nil {
				t.Fatalf("ImportList: %v", err)
			}
			if len(res.References) != tt.images {
				t.Fatalf("references = %+v", res.References)
			}
			got := proxy.MaxReposInFlight()
			if overlap := got >= 2; overlap != tt.wantOverlap {
				t.Errorf("most images pulled at once = %d with --pull-concurrency %d; want overlap %v", got, tt.concurrency, tt.wantOverlap)
			}
			if got > tt.concurrency {
				t.Errorf("most images pulled at once = %d, above --pull-concurrency %d", got, tt.concurrency)
			}
		})
	}
}

func TestImportListPullAuth(t *testing.T) {
	t.Parallel()
	e := newListEnv(t)
	img, _ := e.push("private")
	proxy := harness.StartRegistryProxy(t, e.reg, harness.ProxyOptions{Username: "puller", Password: "s3cret:with:colons"})
	ref := e.ref(proxy.Host, "private")
	list := e.write("private.txt", ref+"\n")

	// Without credentials the registry refuses, and that is not retried.
	// (containerd 1.6 says "401 Unauthorized", 2.x "authorization failed".)
	res, err := e.importer(func(c *importer.Config) { c.PullBackoff = 10 * time.Minute }).ImportList(context.Background(), list)
	if !errors.Is(err, importer.ErrReferencesFailed) || !strings.Contains(strings.ToLower(err.Error()), "auth") {
		t.Fatalf("ImportList without credentials: %v, want an authorization failure", err)
	}
	t.Logf("error: %v", err)
	if r := res.References[0]; r.Outcome != "failure" || r.Attempts != 1 {
		t.Errorf("reference = %+v, want failed after 1 attempt", r)
	}

	authFile := e.write("config.json", fmt.Sprintf(`{"auths": {
		"https://index.docker.io/v1/": {"auth": %q},
		"http://%s/v2/": {"auth": %q}
	}}`, base64.StdEncoding.EncodeToString([]byte("hub:wrong")), proxy.Host,
		base64.StdEncoding.EncodeToString([]byte("puller:s3cret:with:colons"))))
	res, err = e.importer(func(c *importer.Config) { c.PullAuthFile = authFile }).ImportList(context.Background(), list)
	if err != nil {
		t.Fatalf("ImportList with --pull-auth: %v", err)
	}
	if r := res.References[0]; r.Outcome != "pulled" {
		t.Errorf("reference = %+v, want pulled", r)
	}
	e.checkImage(ref, img, "private.txt")
}

func TestImportListBadFiles(t *testing.T) {
	t.Parallel()
	// None of these reaches containerd: no client needed.
	cfg := importer.DefaultConfig()
	im, err := importer.New(nil, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	otherNS := cfg
	otherNS.Namespace = "default"
	imOther, err := importer.New(nil, otherNS, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		im      *importer.Importer
		path    string
		wantErr string
	}{
		{"binary", im, write("binary.txt", "\x1f\x8b\x08\x00binary\x00"), "line 1: not a text file (NUL byte)"},
		{"long line", im, write("long.txt", "busybox\n"+strings.Repeat("x", 5000)), "line 2: line longer than 4096 bytes"},
		{"missing", im, filepath.Join(dir, "absent.txt"), "no such file"},
		{"namespace", imOther, write("ns.txt", "busybox\n"), `keeps images in namespace k8s.io, but the namespace is "default"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := tt.im.Process(context.Background(), importer.Input{Root: dir, Path: tt.path})
			if err == nil || !strings.Contains(err.Error(), tt.path) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want it to name %s and say %q", err, tt.path, tt.wantErr)
			}
			if res.Kind != importer.KindList {
				t.Errorf("kind = %q, want %q", res.Kind, importer.KindList)
			}
		})
	}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
