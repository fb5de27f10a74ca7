package importer

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"filippo.io/edwards25519"
)

// A Sigstore bundle (cosign sign-blob --bundle), read with the standard
// library and verified offline with the trusted keys. Its transparency-log
// entries and certificates are not looked at: no Rekor or Fulcio lookups.
//
// The bundle's JSON (protobuf-specs' Bundle, v0.1 to v0.3) holds either a
// messageSignature (a digest of the file and a signature over it) or a
// DSSE envelope whose in-toto statement names the file's digest. The older
// cosign bundle ({"base64Signature": …}) holds a detached signature.
type sigstoreBundle struct {
	MediaType        string `json:"mediaType"`
	MessageSignature *struct {
		MessageDigest struct {
			Algorithm string `json:"algorithm"`
			Digest    []byte `json:"digest"`
		} `json:"messageDigest"`
		Signature []byte `json:"signature"`
	} `json:"messageSignature"`
	DSSEEnvelope    *dsseEnvelope `json:"dsseEnvelope"`
	Base64Signature string        `json:"base64Signature"`
}

// dsseEnvelope is a DSSE envelope: signatures over PAE(payloadType, payload).
type dsseEnvelope struct {
	Payload     []byte `json:"payload"`
	PayloadType string `json:"payloadType"`
	Signatures  []struct {
		Sig []byte `json:"sig"`
	} `json:"signatures"`
}

// parseBundle reads a bundle into c.
func (c *fileCheck) parseBundle(data []byte) error {
	var b sigstoreBundle
	if err := json.Unmarshal(data, &b); err != nil {
		return fmt.Errorf("not a Sigstore bundle: %w", err)
	}
	switch {
	case b.Base64Signature != "":
		var err error
		c.sig, err = decodeBase64([]byte(b.Base64Signature))
		return err
	case !strings.HasPrefix(b.MediaType, "application/vnd.dev.sigstore.bundle"):
		return fmt.Errorf("mediaType %s: want application/vnd.dev.sigstore.bundle…", shortQuote(b.MediaType))
	case b.MessageSignature != nil:
		ms := b.MessageSignature
		if len(ms.Signature) == 0 {
			return errors.New("messageSignature has no signature")
		}
		c.sig = ms.Signature
		switch ms.MessageDigest.Algorithm {
		case "SHA2_256":
			if len(ms.MessageDigest.Digest) != 32 {
				return fmt.Errorf("SHA2_256 messageDigest of %d bytes", len(ms.MessageDigest.Digest))
			}
			c.want = ms.MessageDigest.Digest
		case "SHA2_512", "":
			// Ed25519ph, or pure Ed25519: the signature is checked against
			// the file's own hashes, with no digest to compare first.
		default:
			return fmt.Errorf("messageDigest algorithm %s: want SHA2_256 or SHA2_512", shortQuote(ms.MessageDigest.Algorithm))
		}
		return nil
	case b.DSSEEnvelope != nil:
		if len(b.DSSEEnvelope.Signatures) == 0 {
			return errors.New("dsseEnvelope has no signatures")
		}
		c.dsse = b.DSSEEnvelope
		return nil
	}
	return errors.New("bundle has neither messageSignature nor dsseEnvelope")
}

// verify returns the trusted key that signed the envelope, once its
// in-toto statement names sum, the file's SHA-256, as a subject's digest;
// else the result (VerifyResults) and why.
func (e *dsseEnvelope) verify(keys []trustedKey, sum []byte) (*trustedKey, string, error) {
	pae := dssePAE(e.PayloadType, e.Payload)
	var signer *trustedKey
	for i := range keys {
		for _, s := range e.Signatures {
			if signer == nil && verifySig(keys[i], pae, s.Sig) {
				signer = &keys[i]
			}
		}
	}
	if signer == nil {
		return nil, VerifyUntrusted, fmt.Errorf("DSSE envelope not signed by any of the %d trusted keys", len(keys))
	}
	var st struct {
		Subject []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(e.Payload, &st); err != nil {
		return nil, VerifyMalformed, fmt.Errorf("DSSE payload is not an in-toto statement: %w", err)
	}
	want := hex.EncodeToString(sum)
	for _, s := range st.Subject {
		if strings.EqualFold(s.Digest["sha256"], want) {
			return signer, "", nil
		}
	}
	return nil, VerifyTampered, fmt.Errorf("the signed statement names no subject of sha256 %s: the file was modified after it was signed", want)
}

// dssePAE is DSSE's pre-authentication encoding, what is signed.
func dssePAE(payloadType string, payload []byte) []byte {
	var b bytes.Buffer
	b.WriteString("DSSEv1 " + strconv.Itoa(len(payloadType)) + " " + payloadType + " " + strconv.Itoa(len(payload)) + " ")
	b.Write(payload)
	return b.Bytes()
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
