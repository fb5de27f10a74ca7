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
// may not connect to containerd's socket at address (a path, or unix://path):
// it is not root and not in the socket's group. Other failures, left to the
// client to report, give nil.
func socketAccess(address string) error {
	path, ok := strings.CutPrefix(address, "unix://")
	if !ok && strings.Contains(address, "://") {
		return nil
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		_ = conn.Close()
		return nil
	}
	if !errors.Is(err, fs.ErrPermission) {
		return nil
	}
	groups, _ := os.Getgroups()
	return fmt.Errorf("containerd socket %s: permission denied for uid %d (gid %d, groups %v): run imagedrop as root, "+
		"or set [grpc] gid in containerd's config to a group it runs in (the chart's securityContext.supplementalGroups)",
		path, os.Geteuid(), os.Getegid(), groups)
}

// logSocketAccess logs, at start, that the daemon may not use containerd's
// socket. The daemon goes on: its jobs fail and are retried, and /readyz
// says why, until the socket's group is fixed.
func logSocketAccess(log *slog.Logger, address string) {
	if err := socketAccess(address); err != nil {
		log.Error("containerd_socket_denied", "err", err)
	}
}
