package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	clog "github.com/containerd/log"
)

// TestClientLogsGoThroughSlog: a line containerd's client library logs
// comes out as a slog JSON record at its level; one below the level not at
// all. Not parallel: the library's logger is global.
func TestClientLogsGoThroughSlog(t *testing.T) {
	var buf bytes.Buffer
	routeClientLogs(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})), slog.LevelWarn)
	log := clog.G(context.Background())
	log.WithField("address", "/run/x.sock").WithError(errors.New("refused")).Warn("reconnecting")
	log.Info("below the level")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("output %q: want one line", buf.String())
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatalf("line %q is not slog JSON: %v", lines[0], err)
	}
	want := map[string]any{"level": "WARN", "msg": "client_log", "component": "containerd_client",
		"message": "reconnecting", "address": "/run/x.sock", "err": "refused"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (line %s)", k, got[k], v, lines[0])
		}
	}
}
