package main

import (
	"context"
	"io"
	"log/slog"
	"slices"

	clog "github.com/containerd/log"
	"github.com/sirupsen/logrus"
)

// routeClientLogs sends what containerd's client library logs (through
// github.com/containerd/log, which is logrus's standard logger) to log, as
// slog records at the matching level, so that stderr holds one format. The
// library's own output is discarded.
func routeClientLogs(log *slog.Logger, level slog.Level) {
	l := clog.L.Logger
	l.SetOutput(io.Discard)
	l.SetLevel(logrusLevel(level))
	l.ReplaceHooks(logrus.LevelHooks{})
	l.AddHook(slogHook{log: log.With("component", "containerd_client")})
}

// logrusLevel is the logrus level that passes what level passes.
func logrusLevel(level slog.Level) logrus.Level {
	switch {
	case level <= slog.LevelDebug:
		return logrus.DebugLevel
	case level <= slog.LevelInfo:
		return logrus.InfoLevel
	case level <= slog.LevelWarn:
		return logrus.WarnLevel
	}
	return logrus.ErrorLevel
}

// slogHook forwards logrus entries to a slog logger.
type slogHook struct{ log *slog.Logger }

func (slogHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h slogHook) Fire(e *logrus.Entry) error {
	level := slog.LevelError
	switch {
	case e.Level >= logrus.DebugLevel:
		level = slog.LevelDebug
	case e.Level == logrus.InfoLevel:
		level = slog.LevelInfo
	case e.Level == logrus.WarnLevel:
		level = slog.LevelWarn
	}
	attrs := []any{"message", e.Message}
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name := k
		if k == logrus.ErrorKey {
			name = "err"
		}
		attrs = append(attrs, name, e.Data[k])
	}
	ctx := e.Context
	if ctx == nil {
		ctx = context.Background()
	}
	h.log.Log(ctx, level, "client_log", attrs...)
	return nil
}
