package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// timeBin is GNU time, which reports a command's peak RSS.
const timeBin = "/usr/bin/time"

// sample is one timed run of a command.
type sample struct {
	wall   time.Duration
	rssKiB int64 // peak RSS of the command itself (not its children); 0 if unknown
	cpu    cpuUse
}

// cores is how many CPUs the whole machine kept busy during the run, on
// average.
func (s sample) cores() float64 {
	if s.wall <= 0 {
		return 0
	}
	return s.cpu.machine.Seconds() / s.wall.Seconds()
}

// cpuUse is the CPU time (user and system) spent during one run, by whom.
type cpuUse struct {
	machine    time.Duration // every process on the machine
	containerd time.Duration
	registry   time.Duration // the list case's registry; 0 in other cases
	command    time.Duration // the timed command and the children it waited for; 0 if unknown
}

// userHZ is the unit of /proc's CPU times: USER_HZ, 100 on every Linux
// architecture containerd runs on.
const userHZ = 100

func ticks(n uint64) time.Duration { return time.Duration(n) * time.Second / userHZ }

// machineCPU reads the machine's busy CPU time from /proc/stat; iowait
// counts as idle.
func machineCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 8 || fields[0] != "cpu" {
		return 0, fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	var busy uint64
	for i, f := range fields[1:] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return ticks(busy), nil
}

// processCPU is the CPU time process pid and the children it waited for
// have used, from /proc/PID/stat; 0 for pid 0.
func processCPU(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: count from the last ")".
	i := bytes.LastIndexByte(b, ')')
	fields := strings.Fields(string(b[i+1:]))
	if i < 0 || len(fields) < 15 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, b)
	}
	var sum uint64
	for _, f := range fields[11:15] { // utime, stime, cutime, cstime
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		sum += v
	}
	return ticks(sum), nil
}

// cpuSnapshot is the CPU time used so far by the machine, containerd and
// the registry.
func cpuSnapshot(containerdPid, registryPid int) (cpuUse, error) {
	var u cpuUse
	var err error
	if u.machine, err = machineCPU(); err != nil {
		return u, err
	}
	if u.containerd, err = processCPU(containerdPid); err != nil {
		return u, err
	}
	u.registry, err = processCPU(registryPid)
	return u, err
}

// withCPU runs f and adds to its sample the CPU time the machine,
// containerd and the registry (pid 0: none) spent meanwhile.
func withCPU(containerdPid, registryPid int, f func() (sample, error)) (sample, error) {
	before, err := cpuSnapshot(containerdPid, registryPid)
	if err != nil {
		return sample{}, err
	}
	s, err := f()
	if err != nil {
		return s, err
	}
	after, err := cpuSnapshot(containerdPid, registryPid)
	if err != nil {
		return sample{}, err
	}
	s.cpu.machine = after.machine - before.machine
	s.cpu.containerd = after.containerd - before.containerd
	s.cpu.registry = after.registry - before.registry
	return s, nil
}

// medianCPU is the median of each of the samples' CPU times.
func medianCPU(ss []sample) cpuUse {
	pick := func(f func(cpuUse) time.Duration) time.Duration {
		ds := make([]time.Duration, len(ss))
		for i, s := range ss {
			ds[i] = f(s.cpu)
		}
		return median(ds)
	}
	return cpuUse{
		machine:    pick(func(u cpuUse) time.Duration { return u.machine }),
		containerd: pick(func(u cpuUse) time.Duration { return u.containerd }),
		registry:   pick(func(u cpuUse) time.Duration { return u.registry }),
		command:    pick(func(u cpuUse) time.Duration { return u.command }),
	}
}

// medianCores is the median of the samples' busy cores.
func medianCores(ss []sample) float64 {
	cs := make([]float64, len(ss))
	for i, s := range ss {
		cs[i] = s.cores()
	}
	return median(cs)
}

// preread reads files into the page cache, so every run starts warm: page
// cache cannot be dropped reliably on a shared machine.
func preread(paths ...string) error {
	buf := make([]byte, 1<<20)
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.CopyBuffer(io.Discard, f, buf)
		f.Close()
		if err != nil {
			return fmt.Errorf("preread %s: %w", p, err)
		}
	}
	return nil
}

// timeCmd runs argv under GNU time and returns its wall time, measured here
// from start to exit, and peak RSS.
func timeCmd(ctx context.Context, dir string, argv []string) (sample, error) {
	rssFile := filepath.Join(dir, "time.out")
	full := append([]string{timeBin, "-v", "-o", rssFile}, argv...)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return sample{}, fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, tail(out.String(), 2000))
	}
	s := sample{wall: wall}
	s.rssKiB, s.cpu.command, _ = parseTime(rssFile)
	return s, nil
}

// parseTime reads the peak RSS and the CPU time (user and system) of a
// command from GNU time's -v output.
func parseTime(path string) (rssKiB int64, cpu time.Duration, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "Maximum resident set size (kbytes):"); ok {
			if rssKiB, err = strconv.ParseInt(strings.TrimSpace(v), 10, 64); err != nil {
				return 0, 0, err
			}
		}
		for _, p := range []string{"User time (seconds):", "System time (seconds):"} {
			if v, ok := strings.CutPrefix(line, p); ok {
				sec, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					return 0, 0, err
				}
				cpu += time.Duration(sec * float64(time.Second))
			}
		}
	}
	if rssKiB == 0 {
		return 0, 0, errors.New("no maximum resident set size in time output")
	}
	return rssKiB, cpu, sc.Err()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// hashFile times Go's sha256, which containerd uses, over path.
func hashFile(path string) (sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return sample{}, err
	}
	defer f.Close()
	start := time.Now()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return sample{}, err
	}
	return sample{wall: time.Since(start)}, nil
}

// shell returns argv running script under bash with pipefail.
func shell(script string) []string { return []string{"bash", "-o", "pipefail", "-c", script} }

// quote quotes s for bash.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func median[T time.Duration | float64](ds []T) T {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// clearNamespace deletes every image of ns, the last one with a synchronous
// garbage collection, so the next run starts on a quiet containerd.
func clearNamespace(ctx context.Context, client *containerd.Client, ns string) error {
	ctx = namespaces.WithNamespace(ctx, ns)
	is := client.ImageService()
	imgs, err := is.List(ctx)
	if err != nil {
		return fmt.Errorf("list images of %s: %w", ns, err)
	}
	for i, img := range imgs {
		var opts []images.DeleteOpt
		if i == len(imgs)-1 {
			opts = append(opts, images.SynchronousDelete())
		}
		if err := is.Delete(ctx, img.Name, opts...); err != nil {
			return fmt.Errorf("delete %s in %s: %w", img.Name, ns, err)
		}
	}
	return nil
}
