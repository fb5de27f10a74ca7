package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"
)

// socketAccess reports, as an error that says what to do, that this process
// cannot use containerd's socket at address (a path, or unix://path): it is
// not there, or this process is neither root nor in the socket's group. One
// dial tells, at once rather than after the client's timeout. Other
// failures, left to the client to report, give nil.
func socketAccess(address string) error {
	path, ok := strings.CutPrefix(address, "unix://")
	if !ok && strings.Contains(address, "://") {
		return nil
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	switch {
	case err == nil:
		_ = conn.Close()
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("containerd socket %s: no such file (k3s and RKE2 keep theirs at --containerd-address /run/k3s/containerd/containerd.sock)", path)
	case errors.Is(err, fs.ErrPermission):
		groups, _ := os.Getgroups()
		return fmt.Errorf("containerd socket %s: %w for uid %d (gid %d, groups %v): run imagedrop as root, "+
			"or set [grpc] gid in containerd's config to a group it runs in (the chart's securityContext.supplementalGroups)",
			path, fs.ErrPermission, os.Geteuid(), os.Getegid(), groups)
	}
	return nil
}

// logSocketAccess logs, at start, that the daemon may not use containerd's
// socket. The daemon goes on: its jobs fail and are retried, and /readyz
// says why, until the socket's group is fixed.
func logSocketAccess(log *slog.Logger, address string) {
	if err := socketAccess(address); errors.Is(err, fs.ErrPermission) {
		log.Error("containerd_socket_denied", "err", err)
	}
}
