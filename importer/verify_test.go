package importer_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagedrop/imagedrop/e2e/harness"
	"github.com/imagedrop/imagedrop/importer"
	"github.com/imagedrop/imagedrop/internal/signtest"
)

// TestVerifiedImport imports archives under the checksum and signature
// policies: a valid sidecar imports the archive and says how; a file
// modified after signing, a signature by an untrusted key or a malformed
// sidecar fails for good with its reason, and leaves nothing behind.
func TestVerifiedImport(t *testing.T) {
	t.Parallel()
	keys := t.TempDir()
	ec, ed := signtest.ECDSA(t, keys, "ec"), signtest.Ed25519(t, keys, "ed")
	stranger, strangerEd := signtest.ECDSA(t, keys, "stranger"), signtest.Ed25519(t, keys, "stranger-ed")
	img := harness.NewImage("example.com/verify/app:1", node, map[string]string{"etc/app": "app"})
	plain := harness.DockerSaveBytes(img)
	other := harness.DockerSaveBytes(harness.NewImage("example.com/verify/app:1", node, map[string]string{"etc/app": "evil"}))

	type sidecar = func(data []byte) []byte
	cases := []struct {
		name, compression string
		policy            importer.Policy
		suffix            string
		make              sidecar
		tamper            bool // the archive is changed after the sidecar is made
		key               string
		want              string // the error, "" for success
	}{
		{"checksum", "none", importer.PolicyChecksum, ".sha256", func(d []byte) []byte { return signtest.SHA256Sum(d, "a.tar") }, false, "", ""},
		{"checksum gzip", "gzip", importer.PolicyChecksum, ".sha256", func(d []byte) []byte { return signtest.SHA256Sum(d, "-") }, false, "", ""},
		{"ecdsa sig", "none", importer.PolicySignature, ".sig", func(d []byte) []byte { return ec.SigFile(t, d) }, false, ec.FP, ""},
		{"ecdsa sig zstd", "zstd", importer.PolicySignature, ".sig", func(d []byte) []byte { return ec.SigFile(t, d) }, false, ec.FP, ""},
		{"ed25519 sig", "gzip", importer.PolicySignature, ".sig", func(d []byte) []byte { return ed.SigFile(t, d) }, false, ed.FP, ""},
		{"ed25519ph sig", "none", importer.PolicySignature, ".sig", func(d []byte) []byte {
			return []byte(base64.StdEncoding.EncodeToString(ed.Sign(t, d, true)))
		}, false, ed.FP, ""},
		{"bundle", "lz4", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return ec.Bundle(t, d) }, false, ec.FP, ""},
		{"dsse bundle", "none", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return ed.DSSEBundle(t, d) }, false, ed.FP, ""},
		{"ecdsa dsse bundle", "zstd", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return ec.DSSEBundle(t, d) }, false, ec.FP, ""},
		{"ed25519ph bundle", "gzip", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return ed.Bundle(t, d) }, false, ed.FP, ""},
		{"pure ed25519 bundle", "none", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return ed.PureEd25519Bundle(t, d) }, false, ed.FP, ""},

		{"checksum tampered", "none", importer.PolicyChecksum, ".sha256", func(d []byte) []byte { return signtest.SHA256Sum(d, "a.tar") }, true, "", "the file was modified after it was signed"},
		{"sig tampered", "gzip", importer.PolicySignature, ".sig", func(d []byte) []byte { return ec.SigFile(t, d) }, true, "", "does not verify with any of the 2 trusted keys"},
		{"bundle tampered", "none", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return ec.Bundle(t, d) }, true, "", "the file was modified after it was signed"},
		{"ed25519ph bundle tampered", "none", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return ed.Bundle(t, d) }, true, "", "has sha512"},
		{"pure ed25519 bundle tampered", "none", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return ed.PureEd25519Bundle(t, d) }, true, "", "the file was modified after it was signed, or signed by a key that is not trusted"},
		{"dsse tampered", "none", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return ed.DSSEBundle(t, d) }, true, "", "the file was modified after it was signed"},
		{"sig untrusted", "none", importer.PolicySignature, ".sig", func(d []byte) []byte { return stranger.SigFile(t, d) }, false, "", "does not verify with any of the 2 trusted keys"},
		{"bundle untrusted", "none", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return stranger.Bundle(t, d) }, false, "", "not signed by a trusted key"},
		{"ed25519ph bundle untrusted", "none", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return strangerEd.Bundle(t, d) }, false, "", "not signed by a trusted key"},
		{"pure ed25519 bundle untrusted", "none", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return strangerEd.PureEd25519Bundle(t, d) }, false, "", "or signed by a key that is not trusted"},
		{"certificate bundle", "none", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return ec.CertBundle(t, d) }, false, "", "the bundle carries a certificate, not a public key"},
		{"dsse untrusted", "none", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return stranger.DSSEBundle(t, d) }, false, "", "DSSE envelope not signed by any of the 2 trusted keys"},
		{"checksum malformed", "none", importer.PolicyChecksum, ".sha256", func([]byte) []byte { return []byte("abc  a.tar\n") }, false, "", "a.tar.sha256: malformed: line 1"},
		{"checksum other name", "none", importer.PolicyChecksum, ".sha256", func(d []byte) []byte { return signtest.SHA256Sum(d, "b.tar") }, false, "", `no line for a.tar (it names "b.tar")`},
		{"sig malformed", "none", importer.PolicySignature, ".sig", func([]byte) []byte { return []byte("not base64!") }, false, "", "a.tar.sig: malformed: signature is not base64"},
		{"bundle malformed", "none", importer.PolicySignature, ".sigstore.json", func([]byte) []byte { return []byte("{") }, false, "", "a.tar.sigstore.json: malformed: not a Sigstore bundle"},
		{"bundle other media type", "none", importer.PolicySignature, ".sigstore.json", func([]byte) []byte { return []byte(`{"mediaType":"x"}`) }, false, "", `malformed: mediaType "x"`},
		{"sidecar too large", "none", importer.PolicySignature, ".sig", func([]byte) []byte { return make([]byte, 70<<10) }, false, "", "over --verify-max-sidecar-size (65536 bytes)"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			data := mustCompress(t, plain, tt.compression)
			signed := data
			if tt.tamper {
				data = mustCompress(t, other, tt.compression)
			}
			path := e.write("a.tar", data)
			e.write("a.tar"+tt.suffix, tt.make(signed))
			im := e.importer(func(c *importer.Config) {
				c.Verify, c.VerifyKeys = tt.policy, []string{ec.Pub, ed.Pub}
			})
			if tt.want != "" {
				e.refused(im, path, data, tt.want)
				return
			}
			res, err := im.ImportArchive(context.Background(), path)
			if err != nil {
				t.Fatalf("ImportArchive: %v", err)
			}
			v := res.Verified
			if v == nil || v.Policy != tt.policy || v.Sidecar != "a.tar"+tt.suffix || v.Key != tt.key {
				t.Errorf("verified = %+v, want policy %s, sidecar a.tar%s, key %q", v, tt.policy, tt.suffix, tt.key)
			}
			if want := fmt.Sprintf("sha256:%x", sha256.Sum256(data)); v != nil && v.Digest != want {
				t.Errorf("digest = %s, want %s", v.Digest, want)
			}
			e.checkImage(img.Name, img, "a.tar", true)
		})
	}
}

// TestVerifyMissingSidecar imports an archive whose signature has not
// arrived (it is still empty): a transient error while --verify-wait has not passed since its
// mtime, then a permanent one; neither leaves anything. Once the signature
// is there, it imports.
func TestVerifyMissingSidecar(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ec := signtest.ECDSA(t, t.TempDir(), "ec")
	img := harness.NewImage("example.com/verify/late:1", node, map[string]string{"etc/late": "late"})
	data := harness.DockerSaveBytes(img)
	path := e.write("late.tar", data)
	e.write("late.tar.sig", nil) // created, not written yet
	im := e.importer(func(c *importer.Config) {
		c.Verify, c.VerifyKeys, c.VerifyWait = importer.PolicySignature, []string{ec.Pub}, time.Hour
	})

	_, err := im.ImportArchive(context.Background(), path)
	if err == nil || importer.IsPermanent(err) || !strings.Contains(err.Error(), "no signature for late.tar yet") {
		t.Fatalf("error = %v, want a transient \"no signature for late.tar yet\"", err)
	}
	e.noLeftovers()

	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	_, err = im.ImportArchive(context.Background(), path)
	if err == nil || !importer.IsPermanent(err) || !strings.Contains(err.Error(), "no signature for late.tar (") {
		t.Fatalf("error = %v, want a permanent \"no signature for late.tar\"", err)
	}
	e.noLeftovers()

	e.write("late.tar.sig", ec.SigFile(t, data))
	if _, err := im.ImportArchive(context.Background(), path); err != nil {
		t.Fatalf("ImportArchive with its signature: %v", err)
	}
	e.checkImage(img.Name, img, "late.tar", true)
}

// TestVerifyOpenSSL verifies signatures the openssl command makes:
// `openssl dgst -sha256 -sign key.pem FILE | base64` for an ECDSA key,
// `openssl pkeyutl -sign -rawin` for an Ed25519 key.
func TestVerifyOpenSSL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ec, ed := signtest.ECDSA(t, dir, "ec"), signtest.Ed25519(t, dir, "ed")
	img := harness.NewImage("example.com/verify/openssl:1", node, map[string]string{"etc/o": "o"})
	data := mustCompress(t, harness.DockerSaveBytes(img), "gzip")
	for _, tt := range []struct {
		name string
		key  signtest.Signer
	}{
		{"ecdsa", ec},
		{"ed25519", ed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			path := e.write("o.tar.gz", data)
			e.write("o.tar.gz.sig", tt.key.OpenSSLSig(t, t.TempDir(), path))
			im := e.importer(func(c *importer.Config) {
				c.Verify, c.VerifyKeys = importer.PolicySignature, []string{ec.Pub, ed.Pub}
			})
			res, err := im.ImportArchive(context.Background(), path)
			if err != nil {
				t.Fatalf("ImportArchive: %v", err)
			}
			if res.Verified == nil || res.Verified.Key != tt.key.FP {
				t.Errorf("verified = %+v, want key %s", res.Verified, tt.key.FP)
			}
			e.checkImage(img.Name, img, "o.tar.gz", true)
		})
	}
}

// TestVerifyList verifies an image list's bytes before anything is pulled:
// a signed list is processed, one whose signature is not its own is refused.
func TestVerifyList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ec := signtest.ECDSA(t, t.TempDir(), "ec")
	list := []byte("# nothing to pull yet\n")
	path := e.write("l.txt", list)
	e.write("l.txt.sigstore.json", ec.Bundle(t, list))
	im := e.importer(func(c *importer.Config) {
		c.Namespace, c.Verify, c.VerifyKeys = importer.CRINamespace, importer.PolicySignature, []string{ec.Pub}
	})
	res, err := im.ImportList(context.Background(), path)
	if err != nil {
		t.Fatalf("ImportList: %v", err)
	}
	if res.Verified == nil || res.Verified.Key != ec.FP {
		t.Errorf("verified = %+v, want key %s", res.Verified, ec.FP)
	}

	bad := e.write("bad.txt", []byte("docker.io/library/busybox:1.36\n"))
	e.write("bad.txt.sigstore.json", ec.Bundle(t, list))
	_, err = im.ImportList(context.Background(), bad)
	if err == nil || !importer.IsPermanent(err) || !strings.Contains(err.Error(), "the file was modified after it was signed") {
		t.Fatalf("error = %v, want a permanent \"modified after it was signed\"", err)
	}
}

func TestSidecarOf(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/d/x.tar.gz.sig":           "/d/x.tar.gz",
		"/d/x.tar.sha256":           "/d/x.tar",
		"/d/x.txt.sigstore.json":    "/d/x.txt",
		"/d/x.TAR.ZST.sig":          "/d/x.TAR.ZST",
		"/d/x.tar":                  "",
		"/d/x.json.sig":             "",
		"/d/notes.sig":              "",
		"/d/x.tar.sig.sig":          "",
		"/d/x.tar.sigstore.json.gz": "",
	} {
		got, ok := importer.SidecarOf(in)
		if got != want || ok != (want != "") {
			t.Errorf("SidecarOf(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// TestVerifyKeys refuses keys of other kinds, and a signature policy
// without keys.
func TestVerifyKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.pub")
	if err := os.WriteFile(empty, []byte("no key here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		keys []string
		want string
	}{
		{[]string{signtest.New(t, dir, "rsa", rsaKey).Pub}, "keys are not supported (want ECDSA P-256 or Ed25519)"},
		{[]string{signtest.New(t, dir, "p384", p384).Pub}, "ECDSA key on P-384: want P-256"},
		{[]string{empty}, `no PEM "PUBLIC KEY" block`},
		{[]string{filepath.Join(dir, "missing.pub")}, "no such file"},
		{nil, "needs at least one --verify-key"},
	} {
		cfg := importer.DefaultConfig()
		cfg.Verify, cfg.VerifyKeys = importer.PolicySignature, tt.keys
		_, err := importer.New(nil, cfg, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New with keys %v: error = %v, want %q", tt.keys, err, tt.want)
		}
	}
	cfg := importer.DefaultConfig()
	cfg.Verify = "maybe"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "want off, checksum or signature") {
		t.Errorf("Validate with verify maybe: %v", err)
	}
}

// TestVerifyBundleTlogEntry verifies a bundle that carries a Rekor entry
// (npm's publish attestation, testdata/sigstore) offline: the entry is
// neither required nor looked up. Its envelope verifies with npm's key,
// then names another artifact's digest than the file's; with only another
// key trusted, it is not signed by a trusted key.
func TestVerifyBundleTlogEntry(t *testing.T) {
	t.Parallel()
	bundle, err := os.ReadFile("testdata/sigstore/npm-publish.sigstore.json")
	if err != nil {
		t.Fatal(err)
	}
	other := signtest.ECDSA(t, t.TempDir(), "other")
	data := harness.DockerSaveBytes(harness.NewImage("example.com/verify/npm:1", node, map[string]string{"etc/npm": "npm"}))
	for _, tt := range []struct {
		key, want string
	}{
		{"testdata/sigstore/npm-publish.pub", "the signed statement names no subject of sha256"},
		{other.Pub, "DSSE envelope not signed by any of the 1 trusted keys"},
	} {
		t.Run(filepath.Base(tt.key), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			path := e.write("n.tar", data)
			e.write("n.tar.sigstore.json", bundle)
			im := e.importer(func(c *importer.Config) {
				c.Verify, c.VerifyKeys = importer.PolicySignature, []string{tt.key}
			})
			e.refused(im, path, data, tt.want)
		})
	}
}
