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
