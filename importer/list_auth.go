package importer

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/distribution/reference"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// pullAuth holds the credentials of a docker config.json by registry host
// ("docker.io", "registry.example.com:5000").
type pullAuth map[string]*runtimeapi.AuthConfig

// loadPullAuth reads the "auths" of a docker config.json. Credential
// helpers (credsStore, credHelpers) are not run.
func loadPullAuth(path string) (pullAuth, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pull auth: %w", err)
	}
	return parsePullAuth(b)
}

func parsePullAuth(b []byte) (pullAuth, error) {
	var cfg struct {
		Auths map[string]struct {
			Auth          string `json:"auth"`
			Username      string `json:"username"`
			Password      string `json:"password"`
			IdentityToken string `json:"identitytoken"`
			RegistryToken string `json:"registrytoken"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("pull auth: not a docker config.json: %w", err)
	}
	out := pullAuth{}
	for key, a := range cfg.Auths {
		host := registryHost(key)
		c := &runtimeapi.AuthConfig{
			Username:      a.Username,
			Password:      a.Password,
			IdentityToken: a.IdentityToken,
			RegistryToken: a.RegistryToken,
			// The CRI sends credentials only to the host of ServerAddress,
			// parsed as a URL: without a scheme it matches nothing.
			ServerAddress: "https://" + host,
		}
		if host == "docker.io" {
			c.ServerAddress = "https://registry-1.docker.io"
		}
		if a.Auth != "" {
			dec, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return nil, fmt.Errorf("pull auth for %s: auth is not base64: %w", key, err)
			}
			user, pass, ok := strings.Cut(string(dec), ":")
			if !ok {
				return nil, fmt.Errorf("pull auth for %s: auth is not base64 of user:password", key)
			}
			c.Username, c.Password = user, pass
		}
		if c.Username == "" && c.IdentityToken == "" && c.RegistryToken == "" {
			continue // no credentials: an entry a credential helper fills
		}
		out[host] = c
	}
	return out, nil
}

// registryHost reduces a config.json key ("https://index.docker.io/v1/",
// "registry.example.com", "http://localhost:5000/v2/") to the registry host
// a reference names.
func registryHost(key string) string {
	key = strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	key, _, _ = strings.Cut(key, "/")
	key = strings.ToLower(key)
	switch key {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return "docker.io"
	}
	return key
}

// forReference returns the credentials for ref's registry, or nil.
func (a pullAuth) forReference(ref string) *runtimeapi.AuthConfig {
	if len(a) == 0 {
		return nil
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil
	}
	return a[strings.ToLower(reference.Domain(named))]
}
