package e2e

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"

	"github.com/imagedrop/imagedrop/e2e/harness"
	"github.com/imagedrop/imagedrop/importer"
)

// TestImportNonRoot runs imagedrop import as an unprivileged user against a
// containerd whose config sets its socket's group ([grpc] gid): in that
// group (a supplementary group, as the chart's supplementalGroups gives) the
// import works; without it, imagedrop fails at once, naming the socket and
// [grpc] gid, and nothing reaches containerd.
func TestImportNonRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		if harness.InCI() {
			t.Fatal("TestImportNonRoot switches users: it must run as root under CI")
		}
		t.Skip("needs root to run imagedrop as another user")
	}
	const uid, socketGID = 65532, 64123
	c, err := harness.StartContainerdGroup(t.Context(), "", socketGID)
	if err != nil {
		if harness.InCI() {
			t.Fatalf("containerd is required under CI: %v", err)
		}
		t.Skipf("containerd not available: %v", err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	st, err := os.Stat(c.Address)
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); sys.Gid != socketGID || st.Mode().Perm() != 0o660 {
		t.Fatalf("socket group %d mode %v; want group %d (the [grpc] gid) and 0660", sys.Gid, st.Mode().Perm(), socketGID)
	}

	// What the user runs and reads is outside the test's private (0700)
	// temporary directories.
	dir, err := os.MkdirTemp("", "imagedrop-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "imagedrop")
	copyFile(t, imagedropBin, bin, 0o755)
	archive := filepath.Join(dir, "app.tar")
	const ref = "example.com/nonroot/app:1"
	if err := os.WriteFile(archive, harness.DockerSaveBytes(harness.NewImage(ref, node, map[string]string{"a": "b"})), 0o644); err != nil {
		t.Fatal(err)
	}
	ns := harness.Namespace(t)
	run := func(groups ...uint32) (string, string, int) {
		cmd := exec.Command(bin, "import", "--containerd-address", c.Address, "--namespace", ns,
			"--containerd-root", filepath.Join(c.Dir, "root"), archive)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: groups}}
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out.String(), errb.String(), ee.ExitCode()
		} else if err != nil {
			t.Fatalf("run imagedrop as uid %d: %v", uid, err)
		}
		return out.String(), errb.String(), 0
	}
	images := c.Client(t).ImageService()
	ctx := namespaces.WithNamespace(context.Background(), ns)

	_, denied, code := run()
	if code != 1 || !strings.Contains(denied, "containerd socket "+c.Address+": permission denied for uid 65532") ||
		!strings.Contains(denied, "[grpc] gid") {
		t.Errorf("without the socket's group: exit %d, stderr %q; want 1 and the socket, permission denied and [grpc] gid named", code, denied)
	}
	if _, err := images.Get(ctx, ref); !errdefs.IsNotFound(err) {
		t.Errorf("image %s after the refused import: %v, want not found", ref, err)
	}

	stdout, stderr, code := run(socketGID)
	if code != 0 || !strings.HasPrefix(stdout, "OK   "+archive+": "+ref) {
		t.Fatalf("in the socket's group: exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
	if strings.Contains(stderr, "free_space_check_off") {
		t.Errorf("the free-space guard could not read --containerd-root as uid %d: %s", uid, stderr)
	}
	img, err := images.Get(ctx, ref)
	if err != nil {
		t.Fatalf("image %s: %v", ref, err)
	}
	if got := img.Labels[importer.LabelPinned]; got != importer.LabelPinnedValue {
		t.Errorf("image %s: label %s = %q, want %q", ref, importer.LabelPinned, got, importer.LabelPinnedValue)
	}
}

// copyFile copies src to dst with mode.
func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
