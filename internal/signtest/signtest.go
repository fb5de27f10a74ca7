// Package signtest signs files as the tools an operator uses on the
// connected side do (cosign sign-blob, cosign attest-blob, openssl,
// sha256sum), with keys a test generates, for the tests of verified imports.
package signtest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/encoding/protojson"
)

// Signer is a key a test signs with, and its public key file.
type Signer struct {
	Priv crypto.Signer
	Pub  string // PEM file of the public key, for --verify-key
	FP   string // fingerprint, as importer.Verification.Key gives it
}

// New writes the public key of priv to dir/name.pub and returns its Signer.
func New(t testing.TB, dir, name string, priv crypto.Signer) Signer {
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
	return Signer{Priv: priv, Pub: p, FP: "sha256:" + hex.EncodeToString(sum[:])}
}

// ECDSA is a new ECDSA P-256 key (cosign generate-key-pair).
func ECDSA(t testing.TB, dir, name string) Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return New(t, dir, name, k)
}

// Ed25519 is a new Ed25519 key.
func Ed25519(t testing.TB, dir, name string) Signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return New(t, dir, name, k)
}

// Sign signs data as cosign sign-blob --key does: ECDSA (ASN.1) over its
// SHA-256; Ed25519 over the bytes themselves, or (ph) Ed25519ph over their
// SHA-512, as cosign ≥ 2.6 does for bundles.
func (s Signer) Sign(t testing.TB, data []byte, ph bool) []byte {
	t.Helper()
	var sig []byte
	var err error
	switch k := s.Priv.(type) {
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

// SigFile is a .sig sidecar: the base64 of the signature, as cosign writes it.
func (s Signer) SigFile(t testing.TB, data []byte) []byte {
	return []byte(base64.StdEncoding.EncodeToString(s.Sign(t, data, false)))
}

// Bundle is a Sigstore bundle (v0.3) of data's messageSignature by s, with
// no transparency-log entry, made by sigstore-go's sign package as cosign
// sign-blob --bundle --tlog-upload=false makes it: ECDSA over the SHA-256
// of data, Ed25519ph over its SHA-512.
func (s Signer) Bundle(t testing.TB, data []byte) []byte {
	t.Helper()
	return s.bundle(t, &sign.PlainData{Data: data}, true)
}

// PureEd25519Bundle is a bundle of data's messageSignature by s (an
// Ed25519 key) with pure Ed25519, over data itself.
func (s Signer) PureEd25519Bundle(t testing.TB, data []byte) []byte {
	t.Helper()
	return s.bundle(t, &sign.PlainData{Data: data}, false)
}

// DSSEBundle is a Sigstore bundle whose DSSE envelope, signed by s, holds
// an in-toto statement naming data's SHA-256 (cosign attest-blob), made by
// sigstore-go's sign package.
func (s Signer) DSSEBundle(t testing.TB, data []byte) []byte {
	t.Helper()
	d := sha256.Sum256(data)
	stmt, _ := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []map[string]any{{"name": "x", "digest": map[string]string{"sha256": hex.EncodeToString(d[:])}}},
		"predicateType": "https://example.com/p", "predicate": map[string]any{},
	})
	return s.bundle(t, &sign.DSSEData{Data: stmt, PayloadType: "application/vnd.in-toto+json"}, false)
}

// CertBundle is a bundle of data's messageSignature by s that carries a
// self-signed certificate of s's key instead of a key hint, as a keyless
// (Fulcio) signature carries its certificate.
func (s Signer) CertBundle(t testing.TB, data []byte) []byte {
	t.Helper()
	return s.bundle(t, &sign.PlainData{Data: data}, true, selfSigned{s})
}

// bundle signs content with s into a JSON bundle, with no transparency
// log or timestamp authority, and a certificate from certs if not nil:
// else the key alone. ph chooses Ed25519ph over pure Ed25519 for an
// Ed25519 key.
func (s Signer) bundle(t testing.TB, content sign.Content, ph bool, certs ...sign.CertificateProvider) []byte {
	t.Helper()
	var opts sign.BundleOptions
	if len(certs) > 0 {
		opts.CertificateProvider = certs[0]
	}
	b, err := sign.Bundle(content, s.keypair(t, ph), opts)
	if err != nil {
		t.Fatalf("sign bundle: %v", err)
	}
	data, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// selfSigned is a certificate provider that issues a Signer's key a
// certificate signed by that key.
type selfSigned struct{ s Signer }

func (c selfSigned) GetCertificate(context.Context, sign.Keypair, *sign.CertificateProviderOptions) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "signtest"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	return x509.CreateCertificate(rand.Reader, tmpl, tmpl, c.s.Priv.Public(), c.s.Priv)
}

// keypair is s as sigstore-go's sign package takes a key.
func (s Signer) keypair(t testing.TB, ph bool) sign.Keypair {
	t.Helper()
	alg := protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256
	if _, ok := s.Priv.(ed25519.PrivateKey); ok {
		alg = protocommon.PublicKeyDetails_PKIX_ED25519
		if ph {
			alg = protocommon.PublicKeyDetails_PKIX_ED25519_PH
		}
	}
	details, err := signature.GetAlgorithmDetails(alg)
	if err != nil {
		t.Fatal(err)
	}
	return keypair{s, details}
}

// keypair is a Signer's key as a sign.Keypair, whose hint is its
// fingerprint.
type keypair struct {
	s   Signer
	alg signature.AlgorithmDetails
}

var _ sign.Keypair = keypair{}

func (k keypair) GetHashAlgorithm() protocommon.HashAlgorithm { return k.alg.GetProtoHashType() }
func (k keypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return k.alg.GetSignatureAlgorithm()
}
func (k keypair) GetHint() []byte                { return []byte(k.s.FP) }
func (k keypair) GetKeyAlgorithm() string        { return "" }
func (k keypair) GetPublicKey() crypto.PublicKey { return k.s.Priv.Public() }

func (k keypair) GetPublicKeyPem() (string, error) {
	der, err := x509.MarshalPKIXPublicKey(k.s.Priv.Public())
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), err
}

// SignData signs data as sign.EphemeralKeypair does: its digest, but for
// pure Ed25519, which signs data itself.
func (k keypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	hf := k.alg.GetHashType()
	signed := data
	if hf != crypto.Hash(0) {
		h := hf.New()
		h.Write(data)
		signed = h.Sum(nil)
	}
	sig, err := k.s.Priv.Sign(rand.Reader, signed, hf)
	return sig, signed, err
}

// OpenSSLSig is the .sig sidecar of the file at path that the openssl
// command makes with s's private key: `openssl dgst -sha256 -sign` for
// ECDSA, `openssl pkeyutl -sign -rawin` for Ed25519, then base64. The key
// is written to dir. Without openssl the test is skipped, or fails with
// CI=true.
func (s Signer) OpenSSLSig(t testing.TB, dir, path string) []byte {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("openssl: %v", err)
		}
		t.Skipf("openssl: %v", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(s.Priv)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	sign := `openssl dgst -sha256 -sign "$KEY" "$FILE" | base64`
	if _, ok := s.Priv.(ed25519.PrivateKey); ok {
		sign = `openssl pkeyutl -sign -inkey "$KEY" -rawin -in "$FILE" | base64`
	}
	cmd := exec.Command("sh", "-c", sign)
	cmd.Env = append(os.Environ(), "KEY="+keyFile, "FILE="+path)
	sig, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", sign, err)
	}
	return sig
}

// SHA256Sum is a .sha256 sidecar of data named name, as sha256sum writes it.
func SHA256Sum(data []byte, name string) []byte {
	return fmt.Appendf(nil, "%x  %s\n", sha256.Sum256(data), name)
}
