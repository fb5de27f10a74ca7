package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// verifyCase is issue #24's row: the plain archive and the .tar.zst
// imported with --verify signature (a .sig sidecar by a key the bench
// generates) against the same imports with verification off, alternating in
// the same rounds, one file at a time: imagedrop imports of the same bytes
// only, so each run follows an import of the same file.
func (b *bench) verifyCase(ctx context.Context, r *caseRun) error {
	if !b.want("verify") {
		return nil
	}
	key, err := b.signInputs(b.in.plain, b.in.zst)
	if err != nil {
		return fmt.Errorf("verify case: %w", err)
	}
	e := r.e
	for _, f := range []struct{ label, file string }{{"plain .tar", b.in.plain}, {".tar.zst", b.in.zst}} {
		off := b.imagedrop(e, "imagedrop --unpack=false, verify off ("+f.label+")", false, f.file)
		on := contender{label: "imagedrop --unpack=false --verify signature (" + f.label + ")", files: []string{f.file, f.file + ".sig"},
			run: b.command(func(ns string) []string {
				args := b.imagedropArgs(e, ns, false, f.file)
				return append(args[:len(args)-1], "--verify", "signature", "--verify-key", key, f.file)
			})}
		// One file's rounds at a time: each run follows an import of the
		// same file, verified or not.
		res, err := b.compare(ctx, e, "verify", []contender{on, off})
		if err != nil {
			return err
		}
		r.sec.add(row{num: "11", what: fmt.Sprintf("%s %s, no unpack, --verify signature (.sig, ECDSA P-256)", r.sizeName, f.label), id: walls(res[0]),
			peer: "the same import, verify off (same rounds)", peerD: walls(res[1]), target: "≤ 1.05×", ratioMax: 1.05, runs: runsOf(res[0], res[1])})
	}
	return nil
}

// signInputs writes a new ECDSA P-256 public key into the work directory and,
// beside each file, FILE.sig as `cosign sign-blob --key` writes it (base64 of
// an ASN.1 signature of the SHA-256 digest); it returns the key's path.
func (b *bench) signInputs(files ...string) (string, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		return "", err
	}
	pub := filepath.Join(b.work, "bench.pub")
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		return "", err
	}
	for _, f := range files {
		h := sha256.New()
		in, err := os.Open(f)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, in)
		in.Close()
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", f, err)
		}
		sig, err := ecdsa.SignASN1(rand.Reader, k, h.Sum(nil))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(f+".sig", []byte(base64.StdEncoding.EncodeToString(sig)+"\n"), 0o644); err != nil {
			return "", err
		}
	}
	return pub, nil
}
