// Package metrics measures what imagedrop does and serves it over HTTP:
// Prometheus metrics on /metrics, liveness on /healthz, readiness on
// /readyz and a JSON status document on /status.
//
// Every metric is registered on a registry handed in by the caller; the
// package holds no global state. Label values are restricted to the constant
// sets declared below, so no file path or image name ever becomes a series.
package metrics

import (
	"runtime"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

const namespace = "imagedrop"

// Kinds of file imagedrop processes, the values of the "kind" label.
const (
	KindArchive = "archive" // an image archive (docker save / OCI layout tarball)
	KindList    = "list"    // a .txt list of image references to pull
)

// Outcomes of processing a file, the values of the "result" label of
// imagedrop_files_processed_total, and of a retag (success or failure only).
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
	ResultSkipped = "skipped"
)

// Outcomes of ensuring one image from a list is present, the values of the
// "result" label of imagedrop_image_pulls_total.
const (
	PullPulled  = "pulled"  // fetched from a registry
	PullPresent = "present" // already in containerd, nothing fetched
	PullFailure = "failure"
)

// unknownLabel replaces a label value outside its constant set. It is not
// pre-initialised, so it only shows up if a caller passes a bad value, and it
// bounds the cardinality of such a bug to one extra series.
const unknownLabel = "unknown"

var (
	kinds       = []string{KindArchive, KindList}
	fileResults = []string{ResultSuccess, ResultFailure, ResultSkipped}
	pullResults = []string{PullPulled, PullPresent, PullFailure}
	retagResult = []string{ResultSuccess, ResultFailure}
	// refusalReasons are the bounds a file may hit, the values of the
	// "reason" label of imagedrop_import_refusals_total.
	refusalReasons = []string{"free_space", "decompressed_size", "list_size", "list_references", "json_size", "archive_entries"}
	// verifyPolicies and verifyResults are the values of the "policy" and
	// "result" labels of imagedrop_verifications_total.
	verifyPolicies = []string{"checksum", "signature"}
	verifyResults  = []string{"verified", "no_sidecar", "malformed", "tampered", "untrusted", "bad_signature"}
)

// The values each label accepts, for the tests of the packages that report
// them.

// Kinds returns the values of the "kind" label.
func Kinds() []string { return slices.Clone(kinds) }

// FileResults returns the values of the "result" label of
// imagedrop_files_processed_total.
func FileResults() []string { return slices.Clone(fileResults) }

// PullResults returns the values of the "result" label of
// imagedrop_image_pulls_total.
func PullResults() []string { return slices.Clone(pullResults) }

// RefusalReasons returns the values of the "reason" label of
// imagedrop_import_refusals_total.
func RefusalReasons() []string { return slices.Clone(refusalReasons) }

// VerifyPolicies returns the values of the "policy" label of
// imagedrop_verifications_total.
func VerifyPolicies() []string { return slices.Clone(verifyPolicies) }

// VerifyResults returns the values of the "result" label of
// imagedrop_verifications_total.
func VerifyResults() []string { return slices.Clone(verifyResults) }

// RetagResults returns the values of the "result" label of
// imagedrop_retags_total.
func RetagResults() []string { return slices.Clone(retagResult) }

// durationBuckets spans 50 ms (a small list whose images are all present) to
// one hour (a multi-gigabyte archive on a slow disk, a large pull).
var durationBuckets = []float64{
	0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600,
}

// Metrics records what imagedrop does. Create it with New; its methods are
// safe for concurrent use.
type Metrics struct {
	filesProcessed  *prometheus.CounterVec
	fileDuration    *prometheus.HistogramVec
	filesFailing    prometheus.Gauge
	filesInvalid    prometheus.Gauge
	refusals        *prometheus.CounterVec
	verifications   *prometheus.CounterVec
	archiveBytes    prometheus.Counter
	imagesImported  prometheus.Counter
	imagePulls      *prometheus.CounterVec
	pullDuration    prometheus.Histogram
	retags          *prometheus.CounterVec
	unpins          prometheus.Counter
	pinnedImages    prometheus.Gauge
	queueDepth      prometheus.Gauge
	jobsInFlight    prometheus.Gauge
	retries         prometheus.Counter
	lastSuccess     prometheus.Gauge
	initialSyncDone prometheus.Gauge
	degradedDirs    prometheus.Gauge
	rescans         prometheus.Counter
	stateSaveFails  prometheus.Counter

	now func() time.Time // replaced in tests
}

// New registers imagedrop's metrics on reg and returns a recorder for them.
// version is exposed as the "version" label of imagedrop_build_info.
// It panics if the metrics are already registered on reg, like promauto.
func New(reg prometheus.Registerer, version string) *Metrics {
	f := promauto.With(reg)
	counter := func(name, help string) prometheus.Counter {
		return f.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return f.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help})
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return f.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	}
	m := &Metrics{
		filesProcessed: counterVec("files_processed_total",
			"Files processed, by kind (archive, list) and result (success, failure, skipped).", "kind", "result"),
		fileDuration: f.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "file_duration_seconds",
			Help:    "Time spent processing a file that succeeded or failed, by kind. Skipped files are not observed.",
			Buckets: durationBuckets}, []string{"kind"}),
		filesFailing: gauge("files_failing", "Files whose last attempt failed and that have not succeeded since."),
		filesInvalid: gauge("files_invalid",
			"Files among imagedrop_files_failing that failed for good (the file is bad: it does not parse, a limit was hit); they are retried only when they change."),
		refusals: counterVec("import_refusals_total",
			"Files refused by a bound of imagedrop's or the node's resources, by reason (free_space, decompressed_size, list_size, list_references, json_size, archive_entries).", "reason"),
		verifications: counterVec("verifications_total",
			"Files verified against their sidecar, by policy (checksum, signature) and result (verified, no_sidecar, malformed, tampered, untrusted, bad_signature).", "policy", "result"),
		archiveBytes: counter("archive_bytes_read_total",
			"Bytes of archive files gone through, as stored on disk (compressed); blobs skipped because containerd had them count too."),
		imagesImported: counter("images_imported_total", "Images imported into containerd from archives."),
		imagePulls: counterVec("image_pulls_total",
			"Images from lists ensured present, by result (pulled, present, failure).", "result"),
		pullDuration: f.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "image_pull_duration_seconds",
			Help:    "Time spent on an image pull that fetched or failed. Images already present are not observed.",
			Buckets: durationBuckets}),
		retags:          counterVec("retags_total", "Image retags, by result (success, failure).", "result"),
		unpins:          counter("unpins_total", "Images unpinned because the file that provided them went away."),
		pinnedImages:    gauge("pinned_images", "Images currently pinned against garbage collection by imagedrop."),
		queueDepth:      gauge("queue_depth", "Files waiting in the queue, not counting those being processed."),
		jobsInFlight:    gauge("jobs_in_flight", "Files being processed right now."),
		retries:         counter("retries_total", "Failed files scheduled for another attempt."),
		lastSuccess:     gauge("last_success_timestamp_seconds", "Unix time of the last file processed successfully, 0 if none yet."),
		initialSyncDone: gauge("initial_sync_complete", "1 once the files present at startup have all been processed, else 0."),
		degradedDirs: gauge("watch_degraded_dirs",
			"Watched directories found by periodic rescans because an inotify watch could not be added (watch limit reached)."),
		rescans: counter("rescans_total",
			"Periodic rescans of a directory (configured with --rescan-dir, or after an inotify watch failed)."),
		stateSaveFails: counter("state_save_failures_total",
			"Failed writes of the state file (disk full, read-only); imports go on, but a restart would redo their work."),
		now: time.Now,
	}
	f.NewGauge(prometheus.GaugeOpts{
		Namespace:   namespace,
		Name:        "build_info",
		Help:        "Always 1, labelled with the imagedrop version and the Go version that built it.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	}).Set(1)
	m.initSeries()
	return m
}

// initSeries creates every series up front so that rate() and absent()
// work from the first scrape, not from the first event.
func (m *Metrics) initSeries() {
	for _, k := range kinds {
		for _, r := range fileResults {
			m.filesProcessed.WithLabelValues(k, r)
		}
		m.fileDuration.WithLabelValues(k)
	}
	for _, r := range pullResults {
		m.imagePulls.WithLabelValues(r)
	}
	for _, r := range retagResult {
		m.retags.WithLabelValues(r)
	}
	for _, r := range refusalReasons {
		m.refusals.WithLabelValues(r)
	}
	for _, p := range verifyPolicies {
		for _, r := range verifyResults {
			m.verifications.WithLabelValues(p, r)
		}
	}
}

// NewRegistry returns an empty private registry with the Go runtime and
// process collectors registered, ready for New.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// FileProcessed records that processing a file of the given kind (KindArchive,
// KindList) ended with result (ResultSuccess, ResultFailure, ResultSkipped)
// after d. A success also sets imagedrop_last_success_timestamp_seconds.
func (m *Metrics) FileProcessed(kind, result string, d time.Duration) {
	kind = oneOf(kind, kinds)
	result = oneOf(result, fileResults)
	m.filesProcessed.WithLabelValues(kind, result).Inc()
	switch result {
	case ResultSkipped:
		// A skip costs next to nothing and would drown the real durations.
	case ResultSuccess:
		m.lastSuccess.Set(float64(m.now().UnixNano()) / 1e9)
		fallthrough
	default:
		m.fileDuration.WithLabelValues(kind).Observe(seconds(d))
	}
}

// SetFilesFailing sets the number of files currently in a failed state.
func (m *Metrics) SetFilesFailing(n, invalid int) {
	m.filesFailing.Set(float64(n))
	m.filesInvalid.Set(float64(invalid))
}

// BytesRead adds n bytes read from an archive file. Non-positive n is ignored.
func (m *Metrics) BytesRead(n int64) {
	if n > 0 {
		m.archiveBytes.Add(float64(n))
	}
}

// ImagesImported adds n images imported from an archive. Non-positive n is
// ignored.
func (m *Metrics) ImagesImported(n int) {
	if n > 0 {
		m.imagesImported.Add(float64(n))
	}
}

// ImagePulled records that ensuring one listed image ended with result
// (PullPulled, PullPresent, PullFailure) after d. The duration is observed
// unless the image was already present.
func (m *Metrics) ImagePulled(result string, d time.Duration) {
	result = oneOf(result, pullResults)
	m.imagePulls.WithLabelValues(result).Inc()
	if result != PullPresent {
		m.pullDuration.Observe(seconds(d))
	}
}

// Retagged records one retag with result ResultSuccess or ResultFailure.
func (m *Metrics) Retagged(result string) {
	m.retags.WithLabelValues(oneOf(result, retagResult)).Inc()
}

// Unpinned adds n images unpinned. Non-positive n is ignored.
func (m *Metrics) Unpinned(n int) {
	if n > 0 {
		m.unpins.Add(float64(n))
	}
}

// SetPinnedImages sets the number of images imagedrop currently pins.
func (m *Metrics) SetPinnedImages(n int) { m.pinnedImages.Set(float64(n)) }

// SetQueueDepth sets the number of files waiting to be processed.
func (m *Metrics) SetQueueDepth(n int) { m.queueDepth.Set(float64(n)) }

// JobStarted records that a worker began processing a file. Pair every call
// with JobFinished.
func (m *Metrics) JobStarted() { m.jobsInFlight.Inc() }

// JobFinished records that a worker finished processing a file.
func (m *Metrics) JobFinished() { m.jobsInFlight.Dec() }

// Retried records that a failed file was scheduled for another attempt.
func (m *Metrics) Retried() { m.retries.Inc() }

// SetDegradedDirs implements watcher.Observer.
func (m *Metrics) SetDegradedDirs(n int) { m.degradedDirs.Set(float64(n)) }

// Refused implements importer.Observer: a file refused by a bound.
func (m *Metrics) Refused(reason string) {
	m.refusals.WithLabelValues(oneOf(reason, refusalReasons)).Inc()
}

// Verified implements importer.Observer: a file verified under policy with
// result.
func (m *Metrics) Verified(policy, result string) {
	m.verifications.WithLabelValues(oneOf(policy, verifyPolicies), oneOf(result, verifyResults)).Inc()
}

// StateSaveFailed implements watcher.Observer.
func (m *Metrics) StateSaveFailed() { m.stateSaveFails.Inc() }

// Rescanned implements watcher.Observer.
func (m *Metrics) Rescanned() { m.rescans.Inc() }

// InitialSyncComplete records that the files present at startup have all been
// processed. It is idempotent.
func (m *Metrics) InitialSyncComplete() { m.initialSyncDone.Set(1) }

// oneOf returns v if it is in set, else unknownLabel.
func oneOf(v string, set []string) string {
	if slices.Contains(set, v) {
		return v
	}
	return unknownLabel
}

func seconds(d time.Duration) float64 {
	return max(d, 0).Seconds()
}
