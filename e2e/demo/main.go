// Command demo shows imagedrop at work against a throwaway containerd: it
// starts containerd in a temporary directory, generates sample archives,
// hands them to imagedrop, and prints the images containerd then holds.
// Run it with `make demo`.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	bin := fs.String("imagedrop", "bin/imagedrop", "imagedrop binary")
	ctrBin := fs.String("containerd", "", "containerd binary (default: containerd on PATH)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	fmt.Fprintln(out, "==> starting a throwaway containerd")
	c, err := harness.StartContainerd(ctx, *ctrBin)
	if err != nil {
		return err
	}
	defer c.Stop()
	fmt.Fprintf(out, "    containerd %s on %s\n", c.Version, c.Address)

	dir, err := os.MkdirTemp("", "imagedrop-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	files, err := writeSamples(dir)
	if err != nil {
		return err
	}

	fmt.Fprintln(out, "==> imagedrop import", strings.Join(relative(dir, files), " "))
	cmd := exec.CommandContext(ctx, *bin, append([]string{"import",
		"--containerd-address", c.Address, "--extra-registry", "registry.local:5000"}, files...)...)
	cmd.Stdout, cmd.Stderr = out, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("imagedrop import: %w", err)
	}
	return listImages(ctx, c.Address, out)
}

// writeSamples writes a docker-save archive of two images compressed with
// zstd and a multi-platform OCI layout compressed with gzip.
func writeSamples(dir string) ([]string, error) {
	base := map[string]string{"etc/os-release": "NAME=imagedrop-demo\n"}
	web := harness.NewImage("demo/web:1.0", "linux/amd64", base, map[string]string{"srv/index.html": "<h1>hello</h1>\n"})
	worker := harness.RandomImage("demo/worker:1.0", "linux/amd64", 1, 2, 4<<20)
	amd := harness.NewImage("docker.io/demo/tool:2", "linux/amd64", map[string]string{"bin/tool": "amd64"})
	arm := harness.NewImage("docker.io/demo/tool:2", "linux/arm64", map[string]string{"bin/tool": "arm64"})
	oci, _ := harness.OCILayoutBytes(harness.OCIEntry{Images: []*harness.Image{amd, arm},
		Annotations: map[string]string{"org.opencontainers.image.ref.name": "docker.io/demo/tool:2"}})

	samples := []struct {
		name, compression string
		data              []byte
	}{
		{"10-apps.tar.zst", "zstd", harness.DockerSaveBytes(web, worker)},
		{"20-tool.tar.gz", "gzip", oci},
	}
	var paths []string
	for _, s := range samples {
		b, err := harness.Compress(s.data, s.compression)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(dir, s.name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

func relative(dir string, paths []string) []string {
	var out []string
	for _, p := range paths {
		r, _ := filepath.Rel(dir, p)
		out = append(out, r)
	}
	return out
}

// listImages prints the k8s.io images with the labels imagedrop set.
func listImages(ctx context.Context, address string, out io.Writer) error {
	client, err := containerd.New(address)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx = namespaces.WithNamespace(ctx, "k8s.io")
	imgs, err := client.ImageService().List(ctx)
	if err != nil {
		return err
	}
	sort.Slice(imgs, func(i, j int) bool { return imgs[i].Name < imgs[j].Name })
	fmt.Fprintln(out, "==> images in containerd namespace k8s.io")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tDIGEST\tPINNED\tSOURCE\tUNPACKED")
	for _, img := range imgs {
		unpacked, _ := containerd.NewImage(client, img).IsUnpacked(ctx, "overlayfs")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\n", img.Name, img.Target.Digest.String()[:19],
			img.Labels["io.cri-containerd.pinned"], img.Labels["imagedrop.io/source"], unpacked)
	}
	return tw.Flush()
}
