package importer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Policy says which files may become images: any (PolicyOff), those that
// match a published checksum, or those signed by a trusted key. It applies
// to archives and lists alike.
type Policy string

// The verification policies.
const (
	PolicyOff       Policy = "off"
	PolicyChecksum  Policy = "checksum"
	PolicySignature Policy = "signature"
)

// Sidecar suffixes: the files beside FILE that vouch for it.
const (
	SuffixChecksum = ".sha256"        // sha256sum format
	SuffixSig      = ".sig"           // cosign sign-blob, or openssl dgst -sign | base64
	SuffixBundle   = ".sigstore.json" // cosign sign-blob --bundle
)

// sidecars returns the sidecar suffixes p accepts, in the order they are
// looked for.
func (p Policy) sidecars() []string {
	switch p {
	case PolicyChecksum:
		return []string{SuffixChecksum}
	case PolicySignature:
		return []string{SuffixBundle, SuffixSig}
	}
	return nil
}

// SidecarOf tells whether path is the sidecar of a file imagedrop handles
// (x.tar.gz.sig, x.tar.gz.sha256, x.txt.sigstore.json) and returns that
// file, in the same directory. A watcher re-runs the file when its sidecar
// arrives or changes.
func SidecarOf(path string) (file string, ok bool) {
	for _, s := range []string{SuffixBundle, SuffixSig, SuffixChecksum} {
		if f, found := strings.CutSuffix(path, s); found {
			if _, ok := KindOf(f); ok && filepath.Base(f) != "" {
				return f, true
			}
		}
	}
	return "", false
}

// Verification is how a file was verified, as Result.Verified reports it.
type Verification struct {
	Policy Policy `json:"policy"`
	// Sidecar is the file name of the sidecar that vouched for the file.
	Sidecar string `json:"sidecar"`
	// Digest is the file's SHA-256, as read.
	Digest string `json:"digest"`
	// Key is the fingerprint of the trusted key that signed it (the SHA-256
	// of its DER public key), for a signature.
	Key string `json:"key,omitempty"`
	// KeyFile is the --verify-key file that key came from.
	KeyFile string `json:"key_file,omitempty"`
}

// ErrUnverified wraps every failed verification: a sidecar missing,
// malformed, or not matching the file.
var ErrUnverified = errors.New("not verified")

// Results of verifying a file, as passed to Observer.Verified. A file still
// waiting for its sidecar (within --verify-wait) has no result yet.
const (
	VerifyVerified  = "verified"   // its sidecar vouches for it
	VerifyNoSidecar = "no_sidecar" // none arrived within --verify-wait
	VerifyMalformed = "malformed"  // the sidecar does not parse, or is over --verify-max-sidecar-size
	VerifyTampered  = "tampered"   // its digest is not the one published or signed
	VerifyUntrusted = "untrusted"  // signed, but by none of the trusted keys
	// VerifyBadSignature is a detached signature (no digest beside it) that
	// verifies with none of the trusted keys: the file was modified or the
	// key is not trusted, which cannot be told apart.
	VerifyBadSignature = "bad_signature"
)

// VerifyResults returns every result Observer.Verified is told.
func VerifyResults() []string {
	return []string{VerifyVerified, VerifyNoSidecar, VerifyMalformed, VerifyTampered, VerifyUntrusted, VerifyBadSignature}
}

// VerifyPolicies returns the policies that verify files, as passed to
// Observer.Verified.
func VerifyPolicies() []string { return []string{string(PolicyChecksum), string(PolicySignature)} }

// verifyError is a failed verification and its result (VerifyResults).
type verifyError struct {
	result string
	err    error
}

func (e verifyError) Error() string { return e.err.Error() }
func (e verifyError) Unwrap() error { return e.err }

// unverified is the permanent error of a file whose verification ended
// with result: ErrUnverified, then the reason.
func unverified(result, format string, a ...any) error {
	return invalid(verifyError{result, fmt.Errorf("%w: %s", ErrUnverified, fmt.Sprintf(format, a...))})
}

// verifyResult is the result of the verification of a file that ended with
// v and err, or "" if it was not verified (the policy is off, it failed
// before its check, or it is still waiting for its sidecar).
func verifyResult(v *Verification, err error) string {
	var ve verifyError
	switch {
	case errors.As(err, &ve):
		return ve.result
	case v != nil:
		return VerifyVerified
	}
	return ""
}

// trustedKey is a public key of --verify-key.
type trustedKey struct {
	pub         crypto.PublicKey // *ecdsa.PublicKey (P-256) or ed25519.PublicKey
	fingerprint string
	file        string
}

// maxKeyFileSize bounds a --verify-key file.
const maxKeyFileSize = 64 << 10

// loadKeys reads the PEM public keys (PKIX "PUBLIC KEY" blocks, as cosign
// generate-key-pair and openssl pkey -pubout write them) of each file.
func loadKeys(paths []string) ([]trustedKey, error) {
	var keys []trustedKey
	for _, p := range paths {
		data, err := readBounded(p, maxKeyFileSize)
		if err != nil {
			return nil, fmt.Errorf("verify key %s: %w", p, err)
		}
		n := 0
		for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
			if block.Type != "PUBLIC KEY" {
				continue
			}
			k, err := parseKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("verify key %s: %w", p, err)
			}
			k.file = p
			keys, n = append(keys, k), n+1
		}
		if n == 0 {
			return nil, fmt.Errorf("verify key %s: no PEM \"PUBLIC KEY\" block", p)
		}
	}
	return keys, nil
}

func parseKey(der []byte) (trustedKey, error) {
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return trustedKey{}, err
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return trustedKey{}, fmt.Errorf("ECDSA key on %s: want P-256", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return trustedKey{}, fmt.Errorf("%T keys are not supported (want ECDSA P-256 or Ed25519)", pub)
	}
	sum := sha256.Sum256(der)
	return trustedKey{pub: pub, fingerprint: "sha256:" + hex.EncodeToString(sum[:])}, nil
}

// readBounded reads the file at path, failing if it holds more than max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAtMost(f, max)
}

// readAtMost reads r to its end, failing if it holds more than max bytes.
func readAtMost(r io.Reader, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, withoutPath(err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("over %d bytes", max)
	}
	return data, nil
}

// prepareCheck reads the sidecar of the file at path (found in root, see
// openInput) that the policy asks for, and returns the check its bytes are
// to be written to as they are read; nil with the policy off. A sidecar
// that is missing is a transient error until Config.VerifyWait after the
// file's mtime (it may still be on its way), then a permanent one.
func (im *Importer) prepareCheck(root, path string, st fs.FileInfo) (*fileCheck, error) {
	policy := im.cfg.Verify
	if policy == "" || policy == PolicyOff {
		return nil, nil
	}
	name, data, err := im.readSidecar(root, path, policy.sidecars())
	if err != nil {
		return nil, err
	}
	if name == "" {
		return nil, im.missingSidecar(path, st, policy)
	}
	c, err := newFileCheck(policy, filepath.Base(name), data, filepath.Base(path), im.keys)
	if err != nil {
		return nil, unverified(VerifyMalformed, "%s: malformed: %v", filepath.Base(name), err)
	}
	return c, nil
}

// readSidecar reads the first of path+suffix that exists, opened as the
// file itself is (openInput) and bounded by Config.MaxSidecarSize. It
// returns "" if none exists but empty ones (being written).
func (im *Importer) readSidecar(root, path string, suffixes []string) (string, []byte, error) {
	for _, s := range suffixes {
		name := path + s
		f, st, err := openInput(root, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		if st.Size() == 0 { // created, not written yet: it has not arrived
			_ = f.Close()
			continue
		}
		limit := int64(im.cfg.MaxSidecarSize)
		if st.Size() > limit {
			_ = f.Close()
			return "", nil, unverified(VerifyMalformed, "%s: %d bytes, over --verify-max-sidecar-size (%d bytes)", name, st.Size(), limit)
		}
		data, err := readAtMost(f, limit)
		_ = f.Close()
		if err != nil {
			return "", nil, unverified(VerifyMalformed, "%s: %v (--verify-max-sidecar-size)", name, err)
		}
		return name, data, nil
	}
	return "", nil, nil
}

// missingSidecar is the error of a file whose sidecar is not there.
func (im *Importer) missingSidecar(path string, st fs.FileInfo, p Policy) error {
	what := "signature"
	if p == PolicyChecksum {
		what = "checksum"
	}
	want := strings.Join(p.sidecars(), " or ")
	if age := time.Since(st.ModTime()); age < im.cfg.VerifyWait {
		return fmt.Errorf("%w: no %s for %s yet (want %s beside it; waiting up to --verify-wait %s after its mtime)",
			ErrUnverified, what, filepath.Base(path), want, im.cfg.VerifyWait)
	}
	return unverified(VerifyNoSidecar, "no %s for %s (no %s beside it within --verify-wait %s after its mtime)",
		what, filepath.Base(path), want, im.cfg.VerifyWait)
}

// validateVerify checks the verification settings of c.
func (c Config) validateVerify() error {
	switch c.Verify {
	case "", PolicyOff, PolicyChecksum:
	case PolicySignature:
		if len(c.VerifyKeys) == 0 {
			return errors.New("verify policy signature needs at least one --verify-key")
		}
	default:
		return fmt.Errorf("verify policy %q: want off, checksum or signature", c.Verify)
	}
	if c.VerifyWait < 0 {
		return errors.New("verify wait must not be negative")
	}
	if c.MaxSidecarSize < 64 {
		return fmt.Errorf("max sidecar size %d: want at least 64 bytes", c.MaxSidecarSize)
	}
	return nil
}
