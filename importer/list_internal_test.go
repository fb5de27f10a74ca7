package importer

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestPullAuth(t *testing.T) {
	t.Parallel()
	cfg := []byte(`{
		"auths": {
			"https://index.docker.io/v1/": {"auth": "aHViOnB3"},
			"registry.example.com:5000": {"username": "u", "password": "p"},
			"https://quay.io/v2/": {"identitytoken": "tok"},
			"helper.example.com": {}
		},
		"credsStore": "desktop"
	}`)
	auth, err := parsePullAuth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ref, user, pass, token, server string
	}{
		{"busybox", "hub", "pw", "", "https://registry-1.docker.io"},
		{"docker.io/team/app:1", "hub", "pw", "", "https://registry-1.docker.io"},
		{"registry.example.com:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "u", "p", "", "https://registry.example.com:5000"},
		{"quay.io/org/app:2", "", "", "tok", "https://quay.io"},
		{"registry.example.com/app:1", "", "", "", ""}, // another port is another registry
		{"helper.example.com/app:1", "", "", "", ""},   // no credentials in the file
	}
	for _, tt := range tests {
		got := auth.forReference(tt.ref)
		if tt.server == "" {
			if got != nil {
				t.Errorf("%s: credentials %v, want none", tt.ref, got)
			}
			continue
		}
		if got == nil || got.Username != tt.user || got.Password != tt.pass || got.IdentityToken != tt.token || got.ServerAddress != tt.server {
			t.Errorf("%s: credentials %v, want user %q password %q token %q server %q", tt.ref, got, tt.user, tt.pass, tt.token, tt.server)
		}
	}

	for _, bad := range []string{`not json`, `{"auths": {"x.io": {"auth": "***"}}}`, `{"auths": {"x.io": {"auth": "bm9jb2xvbg=="}}}`} {
		if _, err := parsePullAuth([]byte(bad)); err == nil {
			t.Errorf("parsePullAuth(%s) succeeded, want an error", bad)
		}
	}
}

func TestPullErrorClass(t *testing.T) {
	t.Parallel()
	unknown := func(msg string) error { return status.Error(codes.Unknown, msg) }
	tests := []struct {
		name      string
		err       error
		notFound  bool
		transient bool
	}{
		{"not found code", status.Error(codes.NotFound, "x"), true, false},
		{"resolver not found", unknown(`failed to resolve reference "r/a:1": r/a:1: not found`), true, false},
		{"manifest unknown", unknown(`unexpected status: 404: manifest unknown`), true, false},
		{"connection refused", unknown(`dial tcp 127.0.0.1:5000: connect: connection refused`), false, true},
		{"5xx", unknown(`unexpected status from GET request to http://r/v2/: 503 Service Unavailable`), false, true},
		{"i/o timeout", unknown(`dial tcp 10.0.0.1:443: i/o timeout`), false, true},
		{"unavailable", status.Error(codes.Unavailable, "connection closed"), false, true},
		{"deadline", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), false, true},
		{"unauthorized", unknown(`pulling from host r failed with status code [manifests 1]: 401 Unauthorized`), false, false},
		{"plain error", errors.New("something odd"), false, false},
	}
	for _, tt := range tests {
		if got := isNotFound(tt.err); got != tt.notFound {
			t.Errorf("%s: isNotFound = %v, want %v", tt.name, got, tt.notFound)
		}
		if got := isTransient(tt.err); got != tt.transient {
			t.Errorf("%s: isTransient = %v, want %v", tt.name, got, tt.transient)
		}
	}
}

func TestPullBackoff(t *testing.T) {
	t.Parallel()
	im := &Importer{cfg: Config{PullBackoff: 3 * time.Second}}
	if got := im.pullBackoff(5); got != 3*time.Second {
		t.Errorf("without a policy: pullBackoff(5) = %s, want Config.PullBackoff 3s", got)
	}
	WithPullBackoff(func(n int) time.Duration { return time.Duration(n) * time.Hour })(im)
	if got := im.pullBackoff(5); got != 5*time.Hour {
		t.Errorf("with a policy: pullBackoff(5) = %s, want the policy's 5h", got)
	}
}
