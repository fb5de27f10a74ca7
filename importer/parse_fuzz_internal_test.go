package importer

import (
	"testing"
)

// The parsers of the JSON documents of an archive, fuzzed: none may panic,
// and what one accepts holds what the import relies on. The seeds run with
// every `go test`; `go test -fuzz FuzzParseOCIIndex ./importer/` explores
// further, and keeps what fails under testdata/fuzz.

func FuzzParseDockerManifests(f *testing.F) {
	for _, seed := range []string{
		`[{"Config":"abc.json","RepoTags":["busybox:1.36"],"Layers":["l1/layer.tar","l2/layer.tar"]}]`,
		`[{"Config":"blobs/sha256/0123","RepoTags":null,"Layers":[]}]`,
		`[]`, `null`, `{}`, `[{"Config":""}]`, `[{"config":"x","layers":"y"}]`, `[` + "\x00",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		mfsts, err := parseDockerManifests(b)
		if err != nil {
			return
		}
		if mfsts == nil {
			t.Fatalf("parseDockerManifests(%q) = nil, nil", b)
		}
		for i, m := range mfsts {
			if m.Config == "" {
				t.Errorf("entry %d accepted without a config: %q", i, b)
			}
		}
	})
}

func FuzzParseOCIIndex(f *testing.F) {
	for _, seed := range []string{
		`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":2,"platform":{"os":"linux","architecture":"amd64"}}]}`,
		`{"manifests":[{"digest":"sha256:abc","size":1}]}`,
		`{"manifests":[{"digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":-1}]}`,
		`{"manifests":null}`, `[]`, `{}`, `{"manifests":[{}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		manifests, err := parseOCIIndex(b)
		if err != nil {
			return
		}
		for i, m := range manifests {
			if err := checkDescriptor(m); err != nil {
				t.Errorf("manifest %d accepted: %v", i, err)
			}
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	for _, seed := range []string{
		`{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":2},"layers":[]}`,
		`{"config":{},"layers":[{"digest":"md5:00","size":1}]}`, `{}`, `null`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		config, layers, err := parseManifest(b)
		if err != nil {
			return
		}
		for _, d := range append(layers, config) {
			if err := checkDescriptor(d); err != nil {
				t.Errorf("descriptor accepted: %v", err)
			}
		}
	})
}
