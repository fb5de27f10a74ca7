package harness

// TB is the part of testing.TB that starting a cluster uses (StartKubernetes,
// StartAPIServer): *testing.T satisfies it, and so can a program that is not
// a test, such as the benchmark, whose Fatal and Fatalf must not return.
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(f func())
	Failed() bool
}
