package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

var imagedropBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "imagedrop-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	imagedropBin, err = harness.BuildImagedrop(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := harness.Main(m)
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// imagedrop runs the binary and returns its stdout, stderr and exit code.
func imagedrop(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(imagedropBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errb.String(), 0
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	}
	t.Fatalf("run imagedrop: %v", err)
	return "", "", -1
}

func TestImportCommand(t *testing.T) {
	c := harness.RequireContainerd(t)
	ns := harness.Namespace(t)
	dir := t.TempDir()
	good := harness.NewImage("example.com/cli/good:1", "linux/amd64", map[string]string{"hello": "world"})
	other := harness.NewImage("example.com/cli/other:2", "linux/amd64", map[string]string{"other": "file"})
	zst, err := harness.Compress(harness.DockerSaveBytes(other), "zstd")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"good.tar":      harness.DockerSaveBytes(good),
		"bad.tar.gz":    []byte("definitely not gzip"),
		"other.tar.zst": zst,
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"IMAGEDROP_CONTAINERD_ADDRESS=" + c.Address, "IMAGEDROP_NAMESPACE=" + ns,
		"IMAGEDROP_EXTRA_REGISTRY=mirror.local:5000, other.local"}
	stdout, stderr, code := imagedrop(t, env, "import",
		filepath.Join(dir, "good.tar"), filepath.Join(dir, "bad.tar.gz"), filepath.Join(dir, "other.tar.zst"))
	if code != 1 {
		t.Errorf("exit code = %d, want 1 (one file failed)\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("want one line per file, got:\n%s", stdout)
	}
	wantLines := []struct{ prefix, contains string }{
		{"OK   " + filepath.Join(dir, "good.tar"), "example.com/cli/good:1, mirror.local:5000/cli/good:1, other.local/cli/good:1"},
		{"FAIL " + filepath.Join(dir, "bad.tar.gz"), "not a tar archive"},
		{"OK   " + filepath.Join(dir, "other.tar.zst"), "example.com/cli/other:2"},
	}
	for i, w := range wantLines {
		if !strings.HasPrefix(lines[i], w.prefix) || !strings.Contains(lines[i], w.contains) {
			t.Errorf("line %d = %q, want prefix %q containing %q", i+1, lines[i], w.prefix, w.contains)
		}
	}

	client := c.Client(t)
	ctx := namespaces.WithNamespace(context.Background(), ns)
	for _, n := range []string{"example.com/cli/good:1", "mirror.local:5000/cli/good:1", "other.local/cli/good:1", "example.com/cli/other:2"} {
		if _, err := client.ImageService().Get(ctx, n); err != nil {
			t.Errorf("image %s: %v", n, err)
		}
	}

	// All good: exit 0. The command line wins over the environment.
	stdout, _, code = imagedrop(t, append(env, "IMAGEDROP_NAMESPACE=wrong"), "import", "--namespace", ns, filepath.Join(dir, "good.tar"))
	if code != 0 || !strings.HasPrefix(stdout, "OK ") {
		t.Errorf("exit code = %d, stdout %q; want 0 and OK", code, stdout)
	}
	if _, err := client.ImageService().Get(namespaces.WithNamespace(context.Background(), "wrong"), "example.com/cli/good:1"); err == nil {
		t.Errorf("the environment won over --namespace")
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"no command", nil, nil, "no command given"},
		{"unknown command", []string{"frobnicate"}, nil, `unknown command "frobnicate"`},
		{"no files", []string{"import"}, nil, "no files given"},
		{"bad flag", []string{"import", "--nope", "x.tar"}, nil, "flag provided but not defined"},
		{"bad registry", []string{"import", "--extra-registry", "https://r.local", "x.tar"}, nil, `extra registry "https://r.local"`},
		{"bad env", []string{"import", "x.tar"}, []string{"IMAGEDROP_PIN=maybe"}, "IMAGEDROP_PIN"},
		{"bad log format", []string{"import", "--log-format", "xml", "x.tar"}, nil, "--log-format"},
		{"no workers", []string{"import", "--workers", "0", "x.tar"}, nil, "--workers must be at least 1"},
		{"flag after the files", []string{"import", "x.tar", "--unpack=false"}, nil, `"--unpack=false" after the files: flags go before them`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := imagedrop(t, tt.env, tt.args...)
			if code != 2 || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, tt.want)
			}
		})
	}
}

// TestHelp checks that help asked for goes to stdout, exits 0, shows
// examples and names what each flag takes.
func TestHelp(t *testing.T) {
	for _, command := range []string{"import", "watch"} {
		for _, flag := range []string{"-h", "--help"} {
			stdout, stderr, code := imagedrop(t, nil, command, flag)
			if code != 0 || stderr != "" || !containsAll(stdout, "Usage: imagedrop "+command, "Examples:\n  imagedrop "+command, "-containerd-address SOCKET") {
				t.Errorf("%s %s: exit %d, stderr %q, stdout %q; want 0, usage with examples and placeholders on stdout", command, flag, code, stderr, stdout)
			}
		}
	}
	if stdout, _, _ := imagedrop(t, nil, "import", "--extra-registry"); strings.Contains(stdout, "Usage") {
		t.Errorf("a usage error printed its usage to stdout: %q", stdout)
	}
}

// TestMissingSocket checks that import fails at once, with a hint for k3s
// and RKE2, when the containerd socket is not there.
func TestMissingSocket(t *testing.T) {
	_, stderr, code := imagedrop(t, nil, "import", "--containerd-address", filepath.Join(t.TempDir(), "containerd.sock"), "x.tar")
	if code != 1 || !containsAll(stderr, "no such file", "/run/k3s/containerd/containerd.sock") {
		t.Errorf("exit %d, stderr %q; want 1, no such file and the k3s/RKE2 socket", code, stderr)
	}
}

// TestVersionCommand checks what the built binary says of itself: its
// version, commit (none set by the harness's build: "unknown", or the
// revision Go stamped from git) and the Go that built it.
func TestVersionCommand(t *testing.T) {
	stdout, stderr, code := imagedrop(t, nil, "version")
	goVersion, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(stdout, "\n")
	wantGo := "go: " + strings.TrimSpace(string(goVersion)) + " " + runtime.GOOS + "/" + runtime.GOARCH
	switch {
	case code != 0 || stderr != "":
		t.Fatalf("version: exit %d, stderr %q", code, stderr)
	case len(lines) != 4 || lines[3] != "":
		t.Fatalf("version printed %q; want 3 lines", stdout)
	case lines[0] != "imagedrop dev":
		t.Errorf("version line %q; want %q (no -X main.version)", lines[0], "imagedrop dev")
	case !regexp.MustCompile(`^commit: (unknown|[0-9a-f]{40}( \(modified\))?)$`).MatchString(lines[1]):
		t.Errorf("commit line %q; want unknown or a git revision", lines[1])
	case lines[2] != wantGo:
		t.Errorf("go line %q; want %q", lines[2], wantGo)
	}
	if _, stderr, code := imagedrop(t, nil, "version", "--short"); code != 2 || !strings.Contains(stderr, "no arguments") {
		t.Errorf("version --short: exit %d, stderr %q; want 2 and a usage error", code, stderr)
	}
}
