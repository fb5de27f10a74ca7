// Command demo shows imagedrop at work against a throwaway containerd: it
// starts containerd in a temporary directory, runs `imagedrop watch` on an
// empty images directory, generates sample archives and drops them in, then
// prints /status, the metrics and the images containerd holds.
// Run it with `make demo`.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

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
	staging, images := filepath.Join(dir, "staging"), filepath.Join(dir, "images")
	for _, d := range []string{staging, images} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	files, err := writeSamples(staging)
	if err != nil {
		return err
	}

	addr, err := harness.FreeAddress()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "==> imagedrop watch --images-dir %s (metrics and status on http://%s)\n", images, addr)
	cmd := exec.CommandContext(ctx, *bin, "watch",
		"--containerd-address", c.Address, "--images-dir", images, "--state-file", filepath.Join(dir, "state.json"),
		"--listen-address", addr, "--extra-registry", "registry.local:5000")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	if err := waitHTTP(ctx, "http://"+addr+"/readyz", nil); err != nil {
		return err
	}

	for _, f := range files {
		fmt.Fprintf(out, "==> dropping %s into the images directory\n", filepath.Base(f))
		if err := os.Rename(f, filepath.Join(images, filepath.Base(f))); err != nil {
			return err
		}
	}
	var st status
	err = waitHTTP(ctx, "http://"+addr+"/status", func(b []byte) bool {
		if json.Unmarshal(b, &st) != nil {
			return false
		}
		done := 0
		for _, f := range st.Files {
			if f.State == "done" || f.State == "failed" {
				done++
			}
		}
		return done == len(files)
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "==> /status")
	for _, f := range st.Files {
		fmt.Fprintf(out, "    %-18s %-7s %-5s %s\n", f.Path, f.Kind, f.State, strings.Join(f.Images, ", "))
	}
	if err := showMetrics(ctx, "http://"+addr+"/metrics", out); err != nil {
		return err
	}
	return listImages(ctx, c.Address, out)
}

type status struct {
	Files []struct {
		Path   string   `json:"path"`
		Kind   string   `json:"kind"`
		State  string   `json:"state"`
		Images []string `json:"images"`
	} `json:"files"`
}

// waitHTTP polls url until it answers 200 and done accepts the body.
func waitHTTP(ctx context.Context, url string, done func([]byte) bool) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && (done == nil || done(b)) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: not ready within a minute", url)
}

// showMetrics prints imagedrop's own counters.
func showMetrics(ctx context.Context, url string, out io.Writer) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "==> /metrics (imagedrop_*, non-zero)")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "imagedrop_") && !strings.HasSuffix(l, " 0") && !strings.Contains(l, "_bucket") {
			fmt.Fprintln(out, "   ", l)
		}
	}
	return nil
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
