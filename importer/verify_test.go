package importer_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagedrop/imagedrop/e2e/harness"
	"github.com/imagedrop/imagedrop/importer"
)

// signer is a key a test signs with, and its public key file.
type signer struct {
	priv crypto.Signer
	pub  string // PEM file
	fp   string // fingerprint, as Verification.Key gives it
}

func newSigner(t *testing.T, dir, name string, priv crypto.Signer) signer {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".pub")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return signer{priv: priv, pub: p, fp: "sha256:" + hex.EncodeToString(sum[:])}
}

func ecdsaSigner(t *testing.T, dir, name string) signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return newSigner(t, dir, name, k)
}

func ed25519Signer(t *testing.T, dir, name string) signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return newSigner(t, dir, name, k)
}

// sign signs data as cosign sign-blob --key does: ECDSA (ASN.1) over its
// SHA-256; Ed25519 over the bytes themselves, or (ph) Ed25519ph over their
// SHA-512, as cosign ≥ 2.6 does for bundles.
func (s signer) sign(t *testing.T, data []byte, ph bool) []byte {
	t.Helper()
	var sig []byte
	var err error
	switch k := s.priv.(type) {
	case *ecdsa.PrivateKey:
		d := sha256.Sum256(data)
		sig, err = ecdsa.SignASN1(rand.Reader, k, d[:])
	case ed25519.PrivateKey:
		if ph {
			d := sha512.Sum512(data)
			sig, err = k.Sign(nil, d[:], &ed25519.Options{Hash: crypto.SHA512})
		} else {
			sig = ed25519.Sign(k, data)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// sigFile is a .sig sidecar: the base64 of the signature, as cosign writes it.
func (s signer) sigFile(t *testing.T, data []byte) []byte {
	return []byte(base64.StdEncoding.EncodeToString(s.sign(t, data, false)))
}

// bundle is a Sigstore bundle (v0.3) of data's messageSignature by s, with
// no transparency-log entry, as cosign sign-blob --bundle --tlog-upload=false
// writes it.
func (s signer) bundle(t *testing.T, data []byte) []byte {
	t.Helper()
	d := sha256.Sum256(data)
	b, _ := json.Marshal(map[string]any{
		"mediaType":            "application/vnd.dev.sigstore.bundle.v0.3+json",
		"verificationMaterial": map[string]any{"publicKey": map[string]string{"hint": s.fp}},
		"messageSignature": map[string]any{
			"messageDigest": map[string]any{"algorithm": "SHA2_256", "digest": d[:]},
			"signature":     s.sign(t, data, false),
		},
	})
	return b
}

// dsseBundle is a Sigstore bundle whose DSSE envelope, signed by s, holds
// an in-toto statement naming data's SHA-256 (cosign attest-blob).
func (s signer) dsseBundle(t *testing.T, data []byte) []byte {
	t.Helper()
	d := sha256.Sum256(data)
	stmt, _ := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []map[string]any{{"name": "x", "digest": map[string]string{"sha256": hex.EncodeToString(d[:])}}},
		"predicateType": "https://example.com/p", "predicate": map[string]any{},
	})
	const typ = "application/vnd.in-toto+json"
	pae := fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(typ), typ, len(stmt), stmt)
	b, _ := json.Marshal(map[string]any{
		"mediaType":    "application/vnd.dev.sigstore.bundle.v0.3+json",
		"dsseEnvelope": map[string]any{"payload": stmt, "payloadType": typ, "signatures": []map[string]any{{"sig": s.sign(t, pae, false)}}},
	})
	return b
}

func sha256sum(data []byte, name string) []byte {
	return fmt.Appendf(nil, "%x  %s\n", sha256.Sum256(data), name)
}

// TestVerifiedImport imports archives under the checksum and signature
// policies: a valid sidecar imports the archive and says how; a file
// modified after signing, a signature by an untrusted key or a malformed
// sidecar fails for good with its reason, and leaves nothing behind.
func TestVerifiedImport(t *testing.T) {
	t.Parallel()
	keys := t.TempDir()
	ec, ed := ecdsaSigner(t, keys, "ec"), ed25519Signer(t, keys, "ed")
	stranger := ecdsaSigner(t, keys, "stranger")
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
		{"checksum", "none", importer.PolicyChecksum, ".sha256", func(d []byte) []byte { return sha256sum(d, "a.tar") }, false, "", ""},
		{"checksum gzip", "gzip", importer.PolicyChecksum, ".sha256", func(d []byte) []byte { return sha256sum(d, "-") }, false, "", ""},
		{"ecdsa sig", "none", importer.PolicySignature, ".sig", func(d []byte) []byte { return ec.sigFile(t, d) }, false, ec.fp, ""},
		{"ecdsa sig zstd", "zstd", importer.PolicySignature, ".sig", func(d []byte) []byte { return ec.sigFile(t, d) }, false, ec.fp, ""},
		{"ed25519 sig", "gzip", importer.PolicySignature, ".sig", func(d []byte) []byte { return ed.sigFile(t, d) }, false, ed.fp, ""},
		{"ed25519ph sig", "none", importer.PolicySignature, ".sig", func(d []byte) []byte {
			return []byte(base64.StdEncoding.EncodeToString(ed.sign(t, d, true)))
		}, false, ed.fp, ""},
		{"bundle", "lz4", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return ec.bundle(t, d) }, false, ec.fp, ""},
		{"dsse bundle", "none", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return ed.dsseBundle(t, d) }, false, ed.fp, ""},

		{"checksum tampered", "none", importer.PolicyChecksum, ".sha256", func(d []byte) []byte { return sha256sum(d, "a.tar") }, true, "", "the file was modified after it was signed"},
		{"sig tampered", "gzip", importer.PolicySignature, ".sig", func(d []byte) []byte { return ec.sigFile(t, d) }, true, "", "does not verify with any of the 2 trusted keys"},
		{"bundle tampered", "none", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return ec.bundle(t, d) }, true, "", "the file was modified after it was signed"},
		{"dsse tampered", "none", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return ed.dsseBundle(t, d) }, true, "", "the file was modified after it was signed"},
		{"sig untrusted", "none", importer.PolicySignature, ".sig", func(d []byte) []byte { return stranger.sigFile(t, d) }, false, "", "does not verify with any of the 2 trusted keys"},
		{"bundle untrusted", "none", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return stranger.bundle(t, d) }, false, "", "not signed by a trusted key"},
		{"dsse untrusted", "none", importer.PolicySignature, ".sigstore.json", func(d []byte) []byte { return stranger.dsseBundle(t, d) }, false, "", "DSSE envelope not signed by any of the 2 trusted keys"},
		{"checksum malformed", "none", importer.PolicyChecksum, ".sha256", func([]byte) []byte { return []byte("abc  a.tar\n") }, false, "", "a.tar.sha256: malformed: line 1"},
		{"checksum other name", "none", importer.PolicyChecksum, ".sha256", func(d []byte) []byte { return sha256sum(d, "b.tar") }, false, "", `no line for a.tar (it names "b.tar")`},
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
				c.Verify, c.VerifyKeys = tt.policy, []string{ec.pub, ed.pub}
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
// arrived: a transient error while --verify-wait has not passed since its
// mtime, then a permanent one; neither leaves anything. Once the signature
// is there, it imports.
func TestVerifyMissingSidecar(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ec := ecdsaSigner(t, t.TempDir(), "ec")
	img := harness.NewImage("example.com/verify/late:1", node, map[string]string{"etc/late": "late"})
	data := harness.DockerSaveBytes(img)
	path := e.write("late.tar", data)
	im := e.importer(func(c *importer.Config) {
		c.Verify, c.VerifyKeys, c.VerifyWait = importer.PolicySignature, []string{ec.pub}, time.Hour
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

	e.write("late.tar.sig", ec.sigFile(t, data))
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
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("openssl: %v", err)
		}
		t.Skipf("openssl: %v", err)
	}
	dir := t.TempDir()
	ec, ed := ecdsaSigner(t, dir, "ec"), ed25519Signer(t, dir, "ed")
	img := harness.NewImage("example.com/verify/openssl:1", node, map[string]string{"etc/o": "o"})
	data := mustCompress(t, harness.DockerSaveBytes(img), "gzip")
	for _, tt := range []struct {
		name string
		key  signer
		sign string
	}{
		{"ecdsa", ec, `openssl dgst -sha256 -sign "$KEY" "$FILE" | base64`},
		{"ed25519", ed, `openssl pkeyutl -sign -inkey "$KEY" -rawin -in "$FILE" | base64`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			path := e.write("o.tar.gz", data)
			der, err := x509.MarshalPKCS8PrivateKey(tt.key.priv)
			if err != nil {
				t.Fatal(err)
			}
			keyFile := e.write("key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
			cmd := exec.Command("sh", "-c", tt.sign)
			cmd.Env = append(os.Environ(), "KEY="+keyFile, "FILE="+path)
			sig, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: %v", tt.sign, err)
			}
			e.write("o.tar.gz.sig", sig)
			im := e.importer(func(c *importer.Config) {
				c.Verify, c.VerifyKeys = importer.PolicySignature, []string{ec.pub, ed.pub}
			})
			res, err := im.ImportArchive(context.Background(), path)
			if err != nil {
				t.Fatalf("ImportArchive: %v", err)
			}
			if res.Verified == nil || res.Verified.Key != tt.key.fp {
				t.Errorf("verified = %+v, want key %s", res.Verified, tt.key.fp)
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
	ec := ecdsaSigner(t, t.TempDir(), "ec")
	list := []byte("# nothing to pull yet\n")
	path := e.write("l.txt", list)
	e.write("l.txt.sigstore.json", ec.bundle(t, list))
	im := e.importer(func(c *importer.Config) {
		c.Namespace, c.Verify, c.VerifyKeys = importer.CRINamespace, importer.PolicySignature, []string{ec.pub}
	})
	res, err := im.ImportList(context.Background(), path)
	if err != nil {
		t.Fatalf("ImportList: %v", err)
	}
	if res.Verified == nil || res.Verified.Key != ec.fp {
		t.Errorf("verified = %+v, want key %s", res.Verified, ec.fp)
	}

	bad := e.write("bad.txt", []byte("docker.io/library/busybox:1.36\n"))
	e.write("bad.txt.sigstore.json", ec.bundle(t, list))
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
		{[]string{newSigner(t, dir, "rsa", rsaKey).pub}, "keys are not supported (want ECDSA P-256 or Ed25519)"},
		{[]string{newSigner(t, dir, "p384", p384).pub}, "ECDSA key on P-384: want P-256"},
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
