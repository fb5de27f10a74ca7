package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/imagedrop/imagedrop/e2e/harness"
	"github.com/imagedrop/imagedrop/importer"
	"github.com/imagedrop/imagedrop/internal/signtest"
)

// verifiedFile is a file the test expects in /status under a verify
// policy: done and verified by key, or failed for good saying reason.
type verifiedFile struct {
	name, sidecar string
	key           string // fingerprint, for a signature that verified
	reason        string // the error, "" if it imports
}

// checkVerified checks each file's state, error and detail.verified.
func checkVerified(t *testing.T, d *daemon, policy importer.Policy, files []verifiedFile) {
	t.Helper()
	for _, want := range files {
		state := "done"
		if want.reason != "" {
			state = "failed"
		}
		var f fileStatus
		eventually(t, 60*time.Second, want.name+" "+state, func() error {
			var ok bool
			s, err := d.tryStatus()
			if err != nil {
				return err
			}
			if f, ok = s.file(want.name); !ok || f.State != state || (want.reason != "" && !f.Invalid) {
				return fmt.Errorf("status %+v", f)
			}
			return nil
		})
		if !strings.Contains(f.Error, want.reason) {
			t.Errorf("%s: error %q, want it to say %q", want.name, f.Error, want.reason)
		}
		var detail struct {
			Verified *importer.Verification `json:"verified"`
		}
		if err := json.Unmarshal(f.Detail, &detail); err != nil {
			t.Fatalf("%s: detail: %v\n%s", want.name, err, f.Detail)
		}
		v := detail.Verified
		switch {
		case want.sidecar == "":
			if v != nil {
				t.Errorf("%s: verified = %+v, want none (no sidecar)", want.name, v)
			}
		case v == nil || v.Policy != policy || v.Sidecar != want.sidecar || v.Key != want.key || !strings.HasPrefix(v.Digest, "sha256:"):
			t.Errorf("%s: verified = %+v, want policy %s, sidecar %s, key %q and its digest", want.name, v, policy, want.sidecar, want.key)
		}
	}
}

// checkNothingLeft checks, with containerd's APIs, that the images of
// failed files left nothing in namespace ns: no image of their names, none
// of their blobs in the content store, no lease, upload or active snapshot.
func checkNothingLeft(t *testing.T, st store, ns string, failed ...*harness.Image) {
	t.Helper()
	for _, img := range failed {
		if _, ok := st.get(img.Name); ok {
			t.Errorf("image %s exists; its file failed verification", img.Name)
		}
		for _, dg := range append(img.DiffIDs(), img.ConfigDigest()) {
			if _, err := st.client.ContentStore().Info(st.ctx, dg); !errdefs.IsNotFound(err) {
				t.Errorf("blob %s of %s: err %v, want not found", dg, img.Name, err)
			}
		}
	}
	if left := leftovers(t, st.client, ns); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// checkVerifications checks imagedrop_verifications_total on /metrics.
func checkVerifications(t *testing.T, d *daemon, policy importer.Policy, want map[string]int) {
	t.Helper()
	_, body, err := d.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for result, n := range want {
		series := fmt.Sprintf("imagedrop_verifications_total{policy=%q,result=%q} %d\n", policy, result, n)
		if !strings.Contains(string(body), series) {
			t.Errorf("/metrics has no %q; it has:\n%s", strings.TrimSpace(series), grep(string(body), "imagedrop_verifications_total{"))
		}
	}
}

func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// copySlowly writes data to path in pieces, each after the settle time of
// the daemon has nearly passed, as a slow copy over the network does.
func copySlowly(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const pieces = 6
	for i := range pieces {
		if _, err := f.Write(data[i*len(data)/pieces : (i+1)*len(data)/pieces]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// TestWatchVerifySignature runs `imagedrop watch --verify signature` on
// archives signed by a trusted key (with openssl, and as a Sigstore
// bundle), one with no signature, one signed by another key, one changed
// after it was signed, one with a malformed signature, and one copied slowly
// whose signature arrives after it: the signed ones import and say by which
// key; the others fail for good with their reason and leave nothing in
// containerd; the metric counts each result.
func TestWatchVerifySignature(t *testing.T) {
	e := newWatchEnv(t, true)
	keys := t.TempDir()
	ops, stranger := signtest.ECDSA(t, keys, "ops"), signtest.ECDSA(t, keys, "stranger")
	imgs := map[string]*harness.Image{}
	archives := map[string][]byte{}
	for _, name := range []string{"signed", "bundled", "unsigned", "stranger", "strangebundle", "tampered", "malformed", "late"} {
		imgs[name] = img("example.com/verify/"+name+":1", 1)
		archives[name], _ = harness.Compress(harness.DockerSaveBytes(imgs[name]), "gzip")
	}
	writeFiles(t, e.images, map[string][]byte{
		"signed.tar.gz":                      archives["signed"],
		"bundled.tar.gz.sigstore.json":       ops.Bundle(t, archives["bundled"]),
		"bundled.tar.gz":                     archives["bundled"],
		"unsigned.tar.gz":                    archives["unsigned"],
		"stranger.tar.gz.sig":                stranger.SigFile(t, archives["stranger"]),
		"stranger.tar.gz":                    archives["stranger"],
		"strangebundle.tar.gz.sigstore.json": stranger.Bundle(t, archives["strangebundle"]),
		"strangebundle.tar.gz":               archives["strangebundle"],
		"tampered.tar.gz.sigstore.json":      ops.Bundle(t, archives["signed"]),
		"tampered.tar.gz":                    archives["tampered"],
		"malformed.tar.gz.sig":               []byte("not base64!\n"),
		"malformed.tar.gz":                   archives["malformed"],
	})
	signed := filepath.Join(e.images, "signed.tar.gz")
	writeFiles(t, e.images, map[string][]byte{"signed.tar.gz.sig": ops.OpenSSLSig(t, t.TempDir(), signed)})

	d := e.start(t, "--verify", "signature", "--verify-key", ops.Pub, "--verify-wait", "20s")
	late := filepath.Join(e.images, "late.tar.gz")
	copySlowly(t, late, archives["late"])
	eventually(t, 30*time.Second, "late.tar.gz waiting for its signature", func() error {
		s, err := d.tryStatus()
		if err != nil {
			return err
		}
		if f, ok := s.file("late.tar.gz"); !ok || !strings.Contains(f.Error, "no signature for late.tar.gz yet") {
			return fmt.Errorf("status %+v", f)
		}
		return nil
	})
	writeFiles(t, e.images, map[string][]byte{"late.tar.gz.sig": ops.SigFile(t, archives["late"])})

	checkVerified(t, d, importer.PolicySignature, []verifiedFile{
		{name: "signed.tar.gz", sidecar: "signed.tar.gz.sig", key: ops.FP},
		{name: "bundled.tar.gz", sidecar: "bundled.tar.gz.sigstore.json", key: ops.FP},
		{name: "late.tar.gz", sidecar: "late.tar.gz.sig", key: ops.FP},
		{name: "unsigned.tar.gz", reason: "no signature for unsigned.tar.gz (no .sigstore.json or .sig beside it within --verify-wait 20s"},
		{name: "stranger.tar.gz", sidecar: "stranger.tar.gz.sig", reason: "signature does not verify with any of the 1 trusted keys"},
		{name: "strangebundle.tar.gz", sidecar: "strangebundle.tar.gz.sigstore.json", reason: "not signed by a trusted key"},
		{name: "tampered.tar.gz", sidecar: "tampered.tar.gz.sigstore.json", reason: "the file was modified after it was signed"},
		{name: "malformed.tar.gz", reason: "malformed.tar.gz.sig: malformed: signature is not base64"},
	})
	for _, name := range []string{"signed", "bundled", "late"} {
		e.st.waitImage(imgs[name].Name, 5*time.Second)
	}
	checkNothingLeft(t, e.st, e.ns, imgs["unsigned"], imgs["stranger"], imgs["strangebundle"], imgs["tampered"], imgs["malformed"])
	checkVerifications(t, d, importer.PolicySignature, map[string]int{
		importer.VerifyVerified: 3, importer.VerifyNoSidecar: 1, importer.VerifyBadSignature: 1,
		importer.VerifyUntrusted: 1, importer.VerifyTampered: 1, importer.VerifyMalformed: 1,
	})
}

// TestWatchVerifyChecksum runs `imagedrop watch --verify checksum`: an
// archive whose .sha256 is its own imports, one whose .sha256 is another
// file's fails and leaves nothing.
func TestWatchVerifyChecksum(t *testing.T) {
	e := newWatchEnv(t, true)
	good, bad := img("example.com/verify/sum-good:1", 1), img("example.com/verify/sum-bad:1", 1)
	goodTar, badTar := harness.DockerSaveBytes(good), harness.DockerSaveBytes(bad)
	writeFiles(t, e.images, map[string][]byte{
		"good.tar": goodTar, "good.tar.sha256": signtest.SHA256Sum(goodTar, "good.tar"),
		"bad.tar": badTar, "bad.tar.sha256": signtest.SHA256Sum(goodTar, "bad.tar"),
	})
	d := e.start(t, "--verify", "checksum")
	checkVerified(t, d, importer.PolicyChecksum, []verifiedFile{
		{name: "good.tar", sidecar: "good.tar.sha256"},
		{name: "bad.tar", sidecar: "bad.tar.sha256", reason: "bad.tar has sha256 "},
	})
	e.st.waitImage(good.Name, 5*time.Second)
	checkNothingLeft(t, e.st, e.ns, bad)
	checkVerifications(t, d, importer.PolicyChecksum, map[string]int{importer.VerifyVerified: 1, importer.VerifyTampered: 1})
}

// TestWatchVerifyList runs `imagedrop watch --verify signature` on image
// lists: a signed list is pulled from the registry; an unsigned one is
// refused, and nothing it names is pulled.
func TestWatchVerifyList(t *testing.T) {
	c := harness.RequireContainerd(t)
	reg := harness.RequireRegistry(t)
	st := newStore(t, c, importer.CRINamespace)
	suffix := fmt.Sprint(time.Now().UnixNano())
	reg.Push(t, "e2e/verify-signed:"+suffix, harness.NewImage("s", node, map[string]string{"s": suffix}))
	reg.Push(t, "e2e/verify-unsigned:"+suffix, harness.NewImage("u", node, map[string]string{"u": suffix}))
	signedRef, unsignedRef := reg.Host+"/e2e/verify-signed:"+suffix, reg.Host+"/e2e/verify-unsigned:"+suffix

	ops := signtest.Ed25519(t, t.TempDir(), "ops")
	dir := t.TempDir()
	lists := filepath.Join(dir, "lists")
	if err := os.Mkdir(lists, 0o755); err != nil {
		t.Fatal(err)
	}
	signedList := []byte(signedRef + "\n")
	writeFiles(t, lists, map[string][]byte{
		"signed.txt.sigstore.json": ops.DSSEBundle(t, signedList), "signed.txt": signedList,
		"unsigned.txt": []byte(unsignedRef + "\n"),
	})
	d := startDaemon(t, c, importer.CRINamespace, "--images-dir", lists, "--state-file", filepath.Join(dir, "state.json"),
		"--verify", "signature", "--verify-key", ops.Pub, "--verify-wait", "1s")
	checkVerified(t, d, importer.PolicySignature, []verifiedFile{
		{name: "signed.txt", sidecar: "signed.txt.sigstore.json", key: ops.FP},
		{name: "unsigned.txt", reason: "no signature for unsigned.txt ("},
	})
	st.waitImage(signedRef, 5*time.Second)
	if _, ok := st.get(unsignedRef); ok {
		t.Errorf("%s was pulled; its list is not signed", unsignedRef)
	}
	checkVerifications(t, d, importer.PolicySignature, map[string]int{importer.VerifyVerified: 1, importer.VerifyNoSidecar: 1})
}
