package importer

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"path/filepath"
	"strings"
)

// fileCheck verifies a file against its sidecar. The file's bytes are
// written to it as they are read for the import (the hash rides on the
// stream; the file is read once) and hashed beside the stream (hashPipe),
// and verify tells the outcome at the end. A check made must be closed.
type fileCheck struct {
	policy  Policy
	sidecar string // its base name
	keys    []trustedKey

	sum256 hash.Hash
	sum512 hash.Hash   // for Ed25519ph signatures, or nil
	pure   []hash.Hash // per key: SHA-512 of R‖A‖file for pure Ed25519, or nil
	w      *hashPipe   // to the hashes

	want    []byte // the SHA-256 the sidecar gives, if it gives one
	want512 []byte // the SHA-512 a bundle gives, if it gives one
	sig     []byte // a signature over the file (detached or messageSignature)
	bundle  *sigstoreBundle
}

// newFileCheck parses the sidecar data of the file named file.
func newFileCheck(p Policy, sidecar string, data []byte, file string, keys []trustedKey) (*fileCheck, error) {
	c := &fileCheck{policy: p, sidecar: sidecar, keys: keys, sum256: sha256.New()}
	var err error
	switch {
	case strings.HasSuffix(sidecar, SuffixChecksum):
		c.want, err = parseChecksum(data, file)
	case strings.HasSuffix(sidecar, SuffixSig):
		c.sig, err = decodeBase64(data)
	default:
		err = c.parseBundle(data)
	}
	if err != nil {
		return nil, err
	}
	writers := []io.Writer{c.sum256}
	if len(c.sig) == ed25519.SignatureSize {
		c.sum512 = sha512.New()
		writers = append(writers, c.sum512)
		c.pure = make([]hash.Hash, len(keys))
		for i, k := range keys {
			if pub, ok := k.pub.(ed25519.PublicKey); ok {
				h := sha512.New()
				h.Write(c.sig[:32])
				h.Write(pub)
				c.pure[i] = h
				writers = append(writers, h)
			}
		}
	}
	c.w = newHashPipe(io.MultiWriter(writers...))
	return c, nil
}

func (c *fileCheck) Write(p []byte) (int, error) { return c.w.Write(p) }

// close ends the hashing of a check; verify needs it done. Closing a nil
// check, or closing one twice, does nothing.
func (c *fileCheck) close() {
	if c != nil {
		c.w.finish()
	}
}

// verify tells whether the bytes written match the sidecar, and how.
func (c *fileCheck) verify(file string) (Verification, error) {
	c.close()
	sum := c.sum256.Sum(nil)
	v := Verification{Policy: c.policy, Sidecar: c.sidecar, Digest: "sha256:" + hex.EncodeToString(sum)}
	fail := func(result, format string, a ...any) (Verification, error) {
		return v, unverified(result, "%s: %s", c.sidecar, fmt.Sprintf(format, a...))
	}
	var sum512 []byte
	if c.sum512 != nil {
		sum512 = c.sum512.Sum(nil)
	}
	if c.want != nil && !bytes.Equal(c.want, sum) {
		return fail(VerifyTampered, "%s has sha256 %x, the sidecar says %x: the file was modified after it was signed", file, sum, c.want)
	}
	if c.want512 != nil && !bytes.Equal(c.want512, sum512) {
		return fail(VerifyTampered, "%s has sha512 %x, the sidecar says %x: the file was modified after it was signed", file, sum512, c.want512)
	}
	var k *trustedKey
	switch {
	case c.bundle != nil:
		var result string
		var err error
		if k, result, err = c.verifyBundle(sum, sum512); err != nil {
			return fail(result, "%v", err)
		}
	case c.sig != nil:
		if k = c.matchKey(sum, sum512); k == nil {
			result, reason := VerifyBadSignature, badSignature
			if c.want != nil {
				result, reason = VerifyUntrusted, "not signed by a trusted key"
			}
			return fail(result, "signature does not verify with any of the %d trusted keys: %s", len(c.keys), reason)
		}
	}
	if k != nil {
		v.Key, v.KeyFile = k.fingerprint, filepath.Base(k.file)
	}
	return v, nil
}

// badSignature is why a signature with no digest beside it does not verify.
const badSignature = "the file was modified after it was signed, or signed by a key that is not trusted"

// matchKey returns the trusted key c.sig is a signature of the file by:
// ECDSA over its SHA-256, Ed25519ph over its SHA-512, or pure Ed25519 over
// its bytes (cosign sign-blob makes either Ed25519 form, by version).
func (c *fileCheck) matchKey(sum256, sum512 []byte) *trustedKey {
	for i := range c.keys {
		switch pub := c.keys[i].pub.(type) {
		case *ecdsa.PublicKey:
			if ecdsa.VerifyASN1(pub, sum256, c.sig) {
				return &c.keys[i]
			}
		case ed25519.PublicKey:
			if sum512 == nil {
				continue
			}
			if ed25519.VerifyWithOptions(pub, sum512, c.sig, &ed25519.Options{Hash: crypto.SHA512}) == nil ||
				verifyEd25519Hashed(pub, c.sig, c.pure[i]) {
				return &c.keys[i]
			}
		}
	}
	return nil
}

// parseChecksum returns the digest that sha256sum output gives for file:
// "<hex>  <name>" or "<hex> *<name>" lines; a line whose name is "-"
// (sha256sum < FILE) or missing counts for any file.
func parseChecksum(data []byte, file string) ([]byte, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	var names []string
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		sum, name, _ := strings.Cut(text, " ")
		name = strings.TrimPrefix(strings.TrimSpace(name), "*")
		d, err := hex.DecodeString(sum)
		if err != nil || len(d) != sha256.Size {
			return nil, fmt.Errorf("line %d: want \"<64 hex digits>  <file name>\", got %s", line, shortQuote(text))
		}
		if name == "" || name == "-" || filepath.Base(name) == file {
			return d, nil
		}
		names = append(names, shortQuote(name))
	}
	if len(names) == 0 {
		return nil, errors.New("no checksum line")
	}
	return nil, fmt.Errorf("no line for %s (it names %s)", file, strings.Join(names[:min(len(names), 3)], ", "))
}

// decodeBase64 decodes a base64 signature, wrapped or not (openssl base64
// wraps at 64 columns).
func decodeBase64(data []byte) ([]byte, error) {
	s := strings.Join(strings.Fields(string(data)), "")
	if s == "" {
		return nil, errors.New("empty signature")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("signature is not base64")
	}
	return b, nil
}
