// Package signtest signs files as the tools an operator uses on the
// connected side do (cosign sign-blob, cosign attest-blob, openssl,
// sha256sum), with keys a test generates, for the tests of verified imports.
package signtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
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
	"testing"
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
// no transparency-log entry, as cosign sign-blob --bundle --tlog-upload=false
// writes it.
func (s Signer) Bundle(t testing.TB, data []byte) []byte {
	t.Helper()
	d := sha256.Sum256(data)
	b, _ := json.Marshal(map[string]any{
		"mediaType":            "application/vnd.dev.sigstore.bundle.v0.3+json",
		"verificationMaterial": map[string]any{"publicKey": map[string]string{"hint": s.FP}},
		"messageSignature": map[string]any{
			"messageDigest": map[string]any{"algorithm": "SHA2_256", "digest": d[:]},
			"signature":     s.Sign(t, data, false),
		},
	})
	return b
}

// DSSEBundle is a Sigstore bundle whose DSSE envelope, signed by s, holds
// an in-toto statement naming data's SHA-256 (cosign attest-blob).
func (s Signer) DSSEBundle(t testing.TB, data []byte) []byte {
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
		"dsseEnvelope": map[string]any{"payload": stmt, "payloadType": typ, "signatures": []map[string]any{{"sig": s.Sign(t, pae, false)}}},
	})
	return b
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
