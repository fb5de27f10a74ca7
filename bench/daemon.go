package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// daemon is a running `imagedrop watch`.
type daemon struct {
	cmd    *exec.Cmd
	addr   string
	exited chan error
	log    *os.File
}

// startDaemon starts `imagedrop watch` on dir with state file state, logging
// to logPath, on a free local port, with --unpack=false unless extra says
// otherwise. It does not wait for readiness.
func startDaemon(bin, address, ns, dir, state, logPath string, extra ...string) (*daemon, error) {
	addr, err := harness.FreeAddress()
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append([]string{"watch", "--containerd-address", address, "--namespace", ns,
		"--images-dir", dir, "--state-file", state, "--listen-address", addr, "--unpack=false", "--log-level", "warn"}, extra...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start imagedrop watch: %w", err)
	}
	d := &daemon{cmd: cmd, addr: addr, exited: make(chan error, 1), log: logf}
	go func() { d.exited <- cmd.Wait() }()
	return d, nil
}

// stop sends SIGTERM and waits for the daemon to exit.
func (d *daemon) stop() error {
	defer d.log.Close()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		return err
	case <-time.After(60 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return errors.New("imagedrop watch did not exit within 60s of SIGTERM")
	}
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func (d *daemon) get(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.addr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// waitReady polls /readyz every interval until it answers 200.
func (d *daemon) waitReady(ctx context.Context, interval, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-d.exited:
			d.exited <- err
			return fmt.Errorf("imagedrop watch exited: %v", err)
		default:
		}
		if code, _, err := d.get(ctx, "/readyz"); err == nil && code == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("/readyz not 200 within %s", timeout)
		}
		time.Sleep(interval)
	}
}

// fileStatus is the part of a file's entry in /status the bench reads.
type fileStatus struct {
	Path    string    `json:"path"`
	State   string    `json:"state"`
	Error   string    `json:"error"`
	Updated time.Time `json:"updated"` // when it was last processed
}

// files returns the files /status lists.
func (d *daemon) files(ctx context.Context) ([]fileStatus, error) {
	code, b, err := d.get(ctx, "/status")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/status: %d", code)
	}
	var s struct {
		Files []fileStatus `json:"files"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("/status: %w", err)
	}
	return s.Files, nil
}

// waitDone polls /status until n files are done; a failed file is an error.
func (d *daemon) waitDone(ctx context.Context, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		files, err := d.files(ctx)
		if err == nil {
			done := 0
			for _, f := range files {
				switch f.State {
				case "done":
					done++
				case "failed":
					return fmt.Errorf("%s failed: %s", f.Path, f.Error)
				}
			}
			if done >= n {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d files not done within %s", n, timeout)
		}
		// Each poll costs the daemon (and this process) a /status of every
		// file on the same cores the import runs on: poll gently, at the
		// price of up to 50 ms more measured.
		time.Sleep(50 * time.Millisecond)
	}
}
