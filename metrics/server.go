package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Probes is what the HTTP server asks the rest of imagedrop about its state.
// cmd/imagedrop implements it.
type Probes interface {
	// Healthy returns nil while the process's loops are alive. A non-nil
	// error makes /healthz answer 503 and the kubelet restart the pod.
	Healthy() error
	// Ready returns nil once the files present at startup have been
	// processed and containerd answers. It must return when ctx is done.
	// While ready, degraded may name a way imagedrop works below par (a
	// directory rescanned because inotify could not watch it): /readyz says
	// so in its body and still answers 200.
	Ready(ctx context.Context) (degraded string, err error)
	// Status returns a JSON-encodable document served on /status.
	Status() any
}

// DefaultAddress is where the server listens unless configured otherwise.
const DefaultAddress = ":9365"

// ServerConfig configures the HTTP server. Zero durations take the defaults
// of DefaultServerConfig.
type ServerConfig struct {
	// Address is the host:port to listen on; port 0 picks a free port.
	Address string
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout bound
	// each connection as in net/http.Server.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// ReadyTimeout bounds one call of Probes.Ready on /readyz. It must be
	// shorter than WriteTimeout.
	ReadyTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown once Run's ctx is done.
	ShutdownTimeout time.Duration
}

// DefaultServerConfig returns the configuration used for unset fields.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		Address:           DefaultAddress,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		ReadyTimeout:      2 * time.Second,
		ShutdownTimeout:   5 * time.Second,
	}
}

// withDefaults returns c with every zero field set from DefaultServerConfig.
func (c ServerConfig) withDefaults() ServerConfig {
	d := DefaultServerConfig()
	if c.Address == "" {
		c.Address = d.Address
	}
	for _, f := range []struct{ v, def *time.Duration }{
		{&c.ReadHeaderTimeout, &d.ReadHeaderTimeout},
		{&c.ReadTimeout, &d.ReadTimeout},
		{&c.WriteTimeout, &d.WriteTimeout},
		{&c.IdleTimeout, &d.IdleTimeout},
		{&c.ReadyTimeout, &d.ReadyTimeout},
		{&c.ShutdownTimeout, &d.ShutdownTimeout},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	return c
}

// Validate reports whether c, with defaults applied, can be served.
func (c ServerConfig) Validate() error {
	c = c.withDefaults()
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		return fmt.Errorf("metrics address %q: %w", c.Address, err)
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"read header timeout", c.ReadHeaderTimeout},
		{"read timeout", c.ReadTimeout},
		{"write timeout", c.WriteTimeout},
		{"idle timeout", c.IdleTimeout},
		{"ready timeout", c.ReadyTimeout},
		{"shutdown timeout", c.ShutdownTimeout},
	} {
		if f.v < 0 {
			return fmt.Errorf("metrics server %s %v: must not be negative", f.name, f.v)
		}
	}
	if c.ReadyTimeout >= c.WriteTimeout {
		return fmt.Errorf("metrics server ready timeout %v: must be shorter than write timeout %v", c.ReadyTimeout, c.WriteTimeout)
	}
	return nil
}

// Server serves /metrics, /healthz, /readyz, /status and an index on /.
// Only GET and HEAD are allowed; other methods get 405.
type Server struct {
	cfg ServerConfig
	log *slog.Logger
	srv *http.Server

	mu sync.Mutex
	ln net.Listener
}

// NewServer returns a server for the metrics in reg and the state reported by
// probes. Neither may be nil; a nil log discards. The caller narrows log (for
// example with .With("component", "http")). Nothing listens until Listen or
// Run.
func NewServer(cfg ServerConfig, log *slog.Logger, reg *prometheus.Registry, probes Probes) *Server {
	if reg == nil || probes == nil {
		panic("metrics.NewServer: nil registry or probes")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, log: log}
	s.srv = &http.Server{
		Handler:           s.routes(reg, probes),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s
}

// Listen validates the configuration and opens the listening socket, so that
// Addr is known before Run. Run calls it if it has not been called; calling it
// again does nothing.
func (s *Server) Listen(ctx context.Context) error {
	if err := s.cfg.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Address)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Address, err)
	}
	s.ln = ln
	return nil
}

// Addr returns the address the server listens on, with the real port when
// configured with port 0, or "" before Listen.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Run serves until ctx is done, then shuts down gracefully within
// ShutdownTimeout and returns nil. It returns an error if it cannot listen,
// if serving fails, or if the shutdown does not finish in time. Call it once.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	addr := ln.Addr().String()

	s.log.Info("http_server_listening", "addr", addr)
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve http on %s: %w", addr, err)
	case <-ctx.Done():
	}

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(shutdownCtx)
	if err != nil {
		err = fmt.Errorf("shut down http server on %s: %w", addr, err)
		// Drop the connections that did not finish in time.
		err = errors.Join(err, s.srv.Close())
	}
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("serve http on %s: %w", addr, serveErr))
	}
	if err == nil {
		s.log.Info("http_server_stopped", "addr", addr)
	}
	return err
}

const index = `imagedrop

/metrics  Prometheus metrics
/healthz  liveness: 200 while imagedrop's loops are alive
/readyz   readiness: 200 once startup files are processed and containerd answers
/status   JSON status document
`

func (s *Server) routes(reg *prometheus.Registry, probes Probes) http.Handler {
	mux := http.NewServeMux()
	// "GET" patterns also match HEAD; ServeMux answers other methods with
	// 405 and an Allow header.
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(reg,
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError),
			// A broken collector costs its own series, not the whole
			// scrape; promhttp_metric_handler_errors_total counts it.
			ErrorHandling: promhttp.ContinueOnError,
			Registry:      reg,
		})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := probes.Healthy(); err != nil {
			s.log.Warn("health_check_failed", "err", err)
			writeText(w, http.StatusServiceUnavailable, "unhealthy: "+err.Error()+"\n")
			return
		}
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ReadyTimeout)
		defer cancel()
		degraded, err := probes.Ready(ctx)
		if err != nil {
			s.log.Debug("readiness_check_failed", "err", err)
			writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
			return
		}
		if degraded != "" {
			writeText(w, http.StatusOK, "ok, degraded: "+degraded+"\n")
			return
		}
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		body, err := json.MarshalIndent(probes.Status(), "", "  ")
		if err != nil {
			s.log.Error("status_encode_failed", "err", err)
			writeText(w, http.StatusInternalServerError, "encode status: "+err.Error()+"\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(append(body, '\n'))
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, index)
	})
	return mux
}

// writeText writes a plain-text response that must not be cached. A write
// error means the client went away; there is nobody left to tell.
func writeText(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}
