package importer_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/imagedrop/imagedrop/e2e/harness"
)

// TestMain runs the tests of the package (both of its test packages)
// against the containerd of e2e/harness, stops that, and then fails the
// package if any test left a goroutine behind. No goroutine is ignored: those
// of the containerd clients and gRPC connections end when the tests close
// them (harness.Containerd.Client closes its client at cleanup), and goleak
// waits a little for those still ending.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(stoppingContainerd{m})
}

// stoppingContainerd runs the tests and then stops the containerd they
// started, so that goleak sees none of the goroutines that wait for it.
type stoppingContainerd struct{ m *testing.M }

func (s stoppingContainerd) Run() int { return harness.Main(s.m) }
