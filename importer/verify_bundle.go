package importer

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strings"
	"time"

	"filippo.io/edwards25519"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
)

// A Sigstore bundle (cosign sign-blob --bundle, cosign attest-blob) is
// parsed and verified by sigstore-go, offline, with the trusted keys only:
// no Rekor, Fulcio or TUF lookups. Its transparency-log entries and
// timestamps may be there and are not required, nor checked; a bundle
// signed with a certificate (keyless) is not signed by a trusted key.
// sigstore-go is given the file's digest computed on the stream, never
// the file, and only the sidecar's bytes, read bounded by
// Config.MaxSidecarSize.
//
// Two forms stay with the standard library, which sigstore-go does not
// verify from a digest: a messageSignature made with pure Ed25519 (a
// signature over the whole file, checked on the stream by
// verifyEd25519Hashed), and the older cosign bundle ({"base64Signature": …},
// not a protobuf-specs Bundle), which holds a detached signature.
type sigstoreBundle struct {
	b    *bundle.Bundle
	dsse bool // a DSSE envelope, else a messageSignature
	// keyless: signed with a certificate, not a key.
	keyless bool
}

// parseBundle reads a bundle into c.
func (c *fileCheck) parseBundle(data []byte) error {
	var probe struct {
		MediaType       string `json:"mediaType"`
		Base64Signature string `json:"base64Signature"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return fmt.Errorf("not a Sigstore bundle: %w", err)
	}
	if probe.Base64Signature != "" {
		var err error
		c.sig, err = decodeBase64([]byte(probe.Base64Signature))
		return err
	}
	if !strings.HasPrefix(probe.MediaType, "application/vnd.dev.sigstore.bundle") {
		return fmt.Errorf("mediaType %s: want application/vnd.dev.sigstore.bundle…", shortQuote(probe.MediaType))
	}
	b := new(bundle.Bundle)
	if err := b.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("not a Sigstore bundle: %s", cut(err.Error(), 200))
	}
	sb := &sigstoreBundle{b: b}
	vc, err := b.VerificationContent()
	if err != nil {
		return fmt.Errorf("verificationMaterial: %s", cut(err.Error(), 200))
	}
	sb.keyless = vc.PublicKey() == nil
	sc, err := b.SignatureContent()
	if err != nil {
		return fmt.Errorf("bundle content: %s", cut(err.Error(), 200))
	}
	if env := sc.EnvelopeContent(); env != nil {
		if n := len(env.RawEnvelope().Signatures); n != 1 {
			return fmt.Errorf("dsseEnvelope has %d signatures, want 1", n)
		}
		if _, err := env.Statement(); err != nil {
			return fmt.Errorf("DSSE payload is not an in-toto statement: %s", cut(err.Error(), 200))
		}
		sb.dsse = true
		c.bundle = sb
		return nil
	}
	ms := sc.MessageSignatureContent()
	if len(ms.Signature()) == 0 {
		return errors.New("messageSignature has no signature")
	}
	c.sig = ms.Signature()
	switch d := ms.Digest(); ms.DigestAlgorithm() {
	case "SHA2_256":
		if len(d) != 32 {
			return fmt.Errorf("SHA2_256 messageDigest of %d bytes", len(d))
		}
		c.want = d
	case "SHA2_512":
		// Ed25519ph; or pure Ed25519, checked against the file's bytes.
		if len(d) != 64 {
			return fmt.Errorf("SHA2_512 messageDigest of %d bytes", len(d))
		}
		c.want512 = d
	case "HASH_ALGORITHM_UNSPECIFIED":
		// Pure Ed25519: no digest to compare first.
	default:
		return fmt.Errorf("messageDigest algorithm %s: want SHA2_256 or SHA2_512", shortQuote(ms.DigestAlgorithm()))
	}
	c.bundle = sb
	return nil
}

// verifyBundle returns the trusted key that signed the bundle of c, given
// the file's SHA-256 and SHA-512 (nil unless Ed25519 may have signed it);
// else the result (VerifyResults) and why. A messageSignature's digest was
// compared with the file's before.
func (c *fileCheck) verifyBundle(sum256, sum512 []byte) (*trustedKey, string, error) {
	if c.bundle.keyless {
		return nil, VerifyUntrusted, errors.New("the bundle carries a certificate, not a public key: only bundles signed with a trusted key (cosign sign-blob --key) are verified, offline")
	}
	digest := sgverify.WithArtifactDigest("sha256", sum256)
	if c.want512 != nil {
		digest = sgverify.WithArtifactDigest("sha512", sum512)
	}
	if c.want != nil || c.want512 != nil || c.bundle.dsse {
		for i := range c.keys {
			if c.bundle.verify(c.keys[i], digest) == nil {
				return &c.keys[i], "", nil
			}
		}
	}
	if !c.bundle.dsse {
		// Pure Ed25519, which sigstore-go verifies only with the file's
		// bytes at hand: checked on the stream (verifyEd25519Hashed).
		for i := range c.keys {
			if pub, ok := c.keys[i].pub.(ed25519.PublicKey); ok && c.pure != nil && verifyEd25519Hashed(pub, c.sig, c.pure[i]) {
				return &c.keys[i], "", nil
			}
		}
		if c.want == nil && c.want512 == nil { // no digest to tell a modified file by
			return nil, VerifyBadSignature, fmt.Errorf("signature does not verify with any of the %d trusted keys: %s", len(c.keys), badSignature)
		}
		return nil, VerifyUntrusted, fmt.Errorf("signature does not verify with any of the %d trusted keys: not signed by a trusted key", len(c.keys))
	}
	for i := range c.keys {
		if c.bundle.verify(c.keys[i], sgverify.WithoutArtifactUnsafe()) == nil {
			return nil, VerifyTampered, fmt.Errorf("the signed statement names no subject of sha256 %x: the file was modified after it was signed", sum256)
		}
	}
	return nil, VerifyUntrusted, fmt.Errorf("DSSE envelope not signed by any of the %d trusted keys", len(c.keys))
}

// verify verifies the bundle with k alone, and the artifact as policy
// says: its digest, or (WithoutArtifactUnsafe) only the DSSE signature.
func (b *sigstoreBundle) verify(k trustedKey, artifact sgverify.ArtifactPolicyOption) error {
	sv, err := b.verifier(k)
	if err != nil {
		return err
	}
	material := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
		// The bundle's key hint is not trusted: k is the only key tried.
		return root.NewExpiringKey(sv, time.Time{}, time.Time{}), nil
	})
	v, err := sgverify.NewVerifier(material, sgverify.WithNoObserverTimestamps(), sgverify.WithoutStatementPredicate())
	if err != nil {
		return err
	}
	_, err = v.Verify(b.b, sgverify.NewPolicy(artifact, sgverify.WithKey()))
	return err
}

// verifier is k as sigstore-go checks a signature with it: ECDSA over
// SHA-256; Ed25519 over the DSSE envelope, or Ed25519ph over the file's
// SHA-512 for a messageSignature.
func (b *sigstoreBundle) verifier(k trustedKey) (signature.Verifier, error) {
	switch pub := k.pub.(type) {
	case *ecdsa.PublicKey:
		return signature.LoadECDSAVerifier(pub, crypto.SHA256)
	case ed25519.PublicKey:
		if b.dsse {
			return signature.LoadED25519Verifier(pub)
		}
		return signature.LoadED25519phVerifier(pub)
	}
	return nil, fmt.Errorf("%T keys are not supported", k.pub)
}

// verifyEd25519Hashed checks a pure Ed25519 signature (RFC 8032) of a
// message too large to hold: h is SHA-512 of R ‖ A ‖ message, hashed as
// the message streamed by. It checks [S]B = R + [k]A as crypto/ed25519 does.
func verifyEd25519Hashed(pub ed25519.PublicKey, sig []byte, h hash.Hash) bool {
	if h == nil || len(sig) != ed25519.SignatureSize || sig[63]&224 != 0 {
		return false
	}
	A, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return false
	}
	k, err := new(edwards25519.Scalar).SetUniformBytes(h.Sum(nil))
	if err != nil {
		return false
	}
	S, err := new(edwards25519.Scalar).SetCanonicalBytes(sig[32:])
	if err != nil {
		return false
	}
	minusA := new(edwards25519.Point).Negate(A)
	R := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(k, minusA, S)
	return bytes.Equal(sig[:32], R.Bytes())
}
