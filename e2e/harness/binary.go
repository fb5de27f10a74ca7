package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// BuildImagedrop builds the imagedrop binary into dir and returns its path.
func BuildImagedrop(dir string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	out := filepath.Join(dir, "imagedrop")
	cmd := exec.Command("go", "build", "-race", "-o", out, "./cmd/imagedrop")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build imagedrop: %w", err)
	}
	return out, nil
}

// BuildStatic builds the package pkg (relative to the module root, e.g.
// "./e2e/k8s/testdata/pause") as a static binary into dir and returns its
// path.
func BuildStatic(dir, pkg string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}
