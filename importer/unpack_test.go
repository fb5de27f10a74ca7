package importer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/typeurl/v2"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imagedrop/imagedrop/e2e/harness"
	"github.com/imagedrop/imagedrop/importer"
)

// sharedLayers builds images over shared bases: each layer holds one file
// of 1 MiB, half random, named by the layer, so a rootfs shows which layers
// it was made of.
type sharedLayers struct {
	layers map[string][]byte // layer name → tar
	files  map[string][]byte // layer name → its file's content
}

func newSharedLayers(t *testing.T, names ...string) *sharedLayers {
	t.Helper()
	s := &sharedLayers{layers: map[string][]byte{}, files: map[string][]byte{}}
	r := rand.New(rand.NewPCG(uint64(len(t.Name())), 7))
	for _, n := range names {
		data := bytes.Repeat([]byte(n+" compressible\n"), (1<<20)/len(n+" compressible\n"))
		for i := 0; i < len(data)/2; i++ {
			data[i] = byte(r.Uint32())
		}
		s.files[n] = data
		s.layers[n] = harness.Layer(harness.File{Name: "layers/" + n, Data: data})
	}
	return s
}

// image is an image of the named layers, base first.
func (s *sharedLayers) image(name string, layers ...string) *harness.Image {
	var tars [][]byte
	for _, l := range layers {
		tars = append(tars, s.layers[l])
	}
	return harness.NewImageFromLayers(name, node, ocispec.ImageConfig{}, tars...)
}

// snapshotEvents follows the namespace's snapshot events from the moment
// it returns.
type snapshotEvents struct {
	e      *env
	ch     <-chan *events.Envelope
	errs   <-chan error
	cancel context.CancelFunc
}

const sentinelTopic = "/imagedrop-test/sentinel"

func (e *env) followSnapshots() *snapshotEvents {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.ctx())
	ch, errs := e.client.EventService().Subscribe(ctx,
		fmt.Sprintf(`namespace==%q,topic~="^/snapshot/"`, e.ns), fmt.Sprintf(`namespace==%q,topic==%q`, e.ns, sentinelTopic))
	s := &snapshotEvents{e: e, ch: ch, errs: errs, cancel: cancel}
	e.t.Cleanup(s.stop)
	s.until() // the subscription is live
	return s
}

func (s *snapshotEvents) stop() {
	s.cancel()
	for range s.errs { // closed once the subscription has ended
	}
}

// until returns the snapshot events published since the last call: it
// publishes a sentinel event and reads up to it, so every event published
// before it is seen. The sentinel is published again until it is seen: the
// first may come before the subscription is live.
func (s *snapshotEvents) until() []any {
	s.e.t.Helper()
	key := fmt.Sprintf("sentinel-%d", rand.Uint64())
	publish := func() {
		if err := s.e.client.EventService().Publish(s.e.ctx(), sentinelTopic, &eventstypes.SnapshotRemove{Key: key}); err != nil {
			s.e.t.Fatalf("publish sentinel: %v", err)
		}
	}
	publish()
	again := time.NewTicker(100 * time.Millisecond)
	defer again.Stop()
	deadline := time.After(time.Minute)
	var out []any
	for {
		select {
		case env := <-s.ch:
			ev, err := typeurl.UnmarshalAny(env.Event)
			if err != nil {
				s.e.t.Fatalf("event %s: %v", env.Topic, err)
			}
			if env.Topic != sentinelTopic {
				out = append(out, ev)
			} else if ev.(*eventstypes.SnapshotRemove).Key == key {
				return out
			}
		case err := <-s.errs:
			s.e.t.Fatalf("snapshot events: %v", err)
		case <-again.C:
			publish()
		case <-deadline:
			s.e.t.Fatal("no sentinel event within a minute")
		}
	}
}

// extractions counts, in events, the unpack snapshots prepared for each
// chain ID, and the most that were active at once.
func extractions(evs []any) (perChain map[string]int, most int) {
	perChain = map[string]int{}
	active := map[string]bool{}
	for _, ev := range evs {
		switch ev := ev.(type) {
		case *eventstypes.SnapshotPrepare:
			if strings.HasPrefix(ev.Key, "extract-") {
				perChain[ev.Key[strings.LastIndexByte(ev.Key, ' ')+1:]]++
				active[ev.Key] = true
			}
		case *eventstypes.SnapshotCommit:
			delete(active, ev.Key)
		case *eventstypes.SnapshotRemove:
			delete(active, ev.Key)
		}
		most = max(most, len(active))
	}
	return perChain, most
}

// checkRootfs asserts that image img is unpacked: each of its chain IDs a
// committed snapshot, and a rootfs mounted from the top one holds exactly
// the files of layers.
func (e *env) checkRootfs(s *sharedLayers, img *harness.Image, layers ...string) {
	e.t.Helper()
	// The view is leased: another test's garbage collection would take it.
	ctx, done, err := e.client.WithLease(e.ctx())
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = done(context.WithoutCancel(ctx)) }()
	sn := e.client.SnapshotService("overlayfs")
	chains := identity.ChainIDs(img.DiffIDs())
	for _, c := range chains {
		info, err := sn.Stat(ctx, c.String())
		if err != nil || info.Kind != snapshots.KindCommitted {
			e.t.Fatalf("%s: snapshot %s = %+v, %v; want committed", img.Name, c, info, err)
		}
	}
	key := "check-" + e.ns + "-" + filepath.Base(img.Name)
	mounts, err := sn.View(ctx, key, chains[len(chains)-1].String())
	if err != nil {
		e.t.Fatalf("%s: view: %v", img.Name, err)
	}
	defer func() {
		if err := sn.Remove(ctx, key); err != nil {
			e.t.Errorf("remove view %s: %v", key, err)
		}
	}()
	dir := e.t.TempDir()
	if err := mount.All(mounts, dir); err != nil {
		e.t.Fatalf("%s: mount: %v", img.Name, err)
	}
	defer func() {
		if err := mount.UnmountAll(dir, 0); err != nil {
			e.t.Errorf("unmount %s: %v", dir, err)
		}
	}()
	entries, err := os.ReadDir(filepath.Join(dir, "layers"))
	if err != nil {
		e.t.Fatalf("%s: rootfs: %v", img.Name, err)
	}
	var got []string
	for _, de := range entries {
		got = append(got, de.Name())
		b, err := os.ReadFile(filepath.Join(dir, "layers", de.Name()))
		if err != nil || !bytes.Equal(b, s.files[de.Name()]) {
			e.t.Errorf("%s: rootfs file layers/%s: %d bytes, %v; not the layer's", img.Name, de.Name(), len(b), err)
		}
	}
	layers = slices.Sorted(slices.Values(layers))
	if !slices.Equal(got, layers) {
		e.t.Errorf("%s: rootfs holds layers %v, want %v", img.Name, got, layers)
	}
}

// TestImportUnpackSharedLayers imports images that share bases (one base
// under four images, one of them under a fifth, two images of their own)
// at several --unpack-concurrency: every image is unpacked with the right
// rootfs, no chain is extracted twice, and no more images are unpacked at
// once than allowed — more than one when allowed and possible.
func TestImportUnpackSharedLayers(t *testing.T) {
	t.Parallel()
	for _, concurrency := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("concurrency-%d", concurrency), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			s := newSharedLayers(t, "base", "a", "b", "c", "d", "x", "y")
			want := map[string][]string{
				"example.com/base:1": {"base"},
				"example.com/a:1":    {"base", "a"},
				"example.com/b:1":    {"base", "b"},
				"example.com/c:1":    {"base", "b", "c"},
				"example.com/d:1":    {"base", "d"},
				"example.com/x:1":    {"x"},
				"example.com/y:1":    {"y"},
			}
			var imgs []*harness.Image
			for _, n := range []string{"example.com/a:1", "example.com/c:1", "example.com/b:1", "example.com/base:1", "example.com/d:1", "example.com/x:1", "example.com/y:1"} {
				imgs = append(imgs, s.image(n, want[n]...))
			}
			path := e.write("shared.tar", harness.DockerSaveBytes(imgs...))
			follow := e.followSnapshots()

			res, err := e.importer(func(c *importer.Config) { c.UnpackConcurrency = concurrency }).ImportArchive(context.Background(), path)
			if err != nil {
				t.Fatalf("ImportArchive: %v", err)
			}
			if res.Unpacked != len(imgs) {
				t.Errorf("unpacked = %d, want %d", res.Unpacked, len(imgs))
			}
			perChain, most := extractions(follow.until())
			for _, img := range imgs {
				e.checkImage(img.Name, img, "shared.tar", true)
				e.checkRootfs(s, img, want[img.Name]...)
			}
			chains := map[string]bool{}
			for _, img := range imgs {
				for _, c := range identity.ChainIDs(img.DiffIDs()) {
					chains[c.String()] = true
				}
			}
			for c := range chains {
				if perChain[c] != 1 {
					t.Errorf("chain %s extracted %d times, want once", c, perChain[c])
				}
			}
			if len(perChain) != len(chains) {
				t.Errorf("extracted %d chains, want %d: %v", len(perChain), len(chains), perChain)
			}
			if most > concurrency {
				t.Errorf("most unpack snapshots active at once = %d, above --unpack-concurrency %d", most, concurrency)
			}
			if overlap := most >= 2; overlap != (concurrency >= 2) {
				t.Errorf("most unpack snapshots active at once = %d with --unpack-concurrency %d; want overlap %v", most, concurrency, concurrency >= 2)
			}
		})
	}
}

// TestImportUnpackFailure imports images beside one whose config names a
// diff ID its layer does not have, which only its unpack finds: the import
// fails naming that image, and leaves nothing behind.
func TestImportUnpackFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSharedLayers(t, "base", "a", "b", "c", "bad")
	good := []*harness.Image{s.image("example.com/a:1", "base", "a"), s.image("example.com/b:1", "base", "b"), s.image("example.com/c:1", "c")}
	liar := s.image("example.com/liar:1", "base", "bad")
	var cfg map[string]any
	if err := json.Unmarshal(liar.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["rootfs"].(map[string]any)["diff_ids"].([]any)[1] = digest.FromString("another layer").String()
	liar.Config, _ = json.Marshal(cfg)
	var entries []harness.OCIEntry
	for _, img := range append(good, liar) {
		entries = append(entries, harness.OCIImage(img))
	}
	data, _ := harness.OCILayoutBytes(entries...)
	path := e.write("liar.tar", data)

	_, err := e.importer(func(c *importer.Config) { c.UnpackConcurrency = 3 }).ImportArchive(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "unpack example.com/liar:1") {
		t.Fatalf("ImportArchive = %v, want an error naming %s and the unpack of example.com/liar:1", err, path)
	}
	t.Logf("error: %v", err)
	if got := e.imageNames(); len(got) != 0 {
		t.Errorf("images left behind: %v", got)
	}
	if got := e.blobs(); len(got) != 0 {
		t.Errorf("content left behind: %v", got)
	}
	if got := e.leftovers(); len(got) != 0 {
		t.Errorf("left behind: %v", got)
	}
}
