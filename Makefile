# imagedrop — see README.md.
SHELL := /bin/bash
GO ?= go
CACHE ?= /var/cache/imagedrop
CONTAINERD2 := $(CACHE)/containerd-v2.4.2/bin/containerd
CRICTL := $(CACHE)/bin/crictl
BIN := bin/imagedrop
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGE := bin/imagedrop-image.tar
GOTEST_FLAGS ?= -race -count=1 -timeout 20m

.PHONY: all build image setup demo test test-k8s test-unit lint bench fuzz clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION) -X main.commit=$(REVISION)" -o $(BIN) ./cmd/imagedrop

# The container image, without a Docker engine or registry: static binaries
# for linux/amd64 and linux/arm64 on an empty base, as one multi-platform OCI
# archive named ghcr.io/imagedrop/imagedrop:$(VERSION) (deploy/imagebuild).
# Load it with `imagedrop import`, `ctr -n k8s.io images import`, `docker
# load` or skopeo's oci-archive: transport.
image:
	$(GO) run ./deploy/imagebuild -out $(IMAGE) -version $(VERSION) -revision "$(REVISION)" -source-date-epoch $(SOURCE_DATE_EPOCH)

# Installs containerd, docker-registry, prometheus, zstd, lz4, etcd, the CNI
# plugins, and builds containerd 2.x and the Kubernetes node binaries into
# $(CACHE) once (the latter 10-15 minutes on 2 cores).
setup:
	./e2e/setup.sh >/dev/null

# Starts a throwaway containerd, runs imagedrop on a sample archive it
# generates, and shows the resulting images.
demo: setup build
	$(GO) run ./e2e/demo --imagedrop $(BIN)

lint: setup
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...
	$(CACHE)/bin/staticcheck ./...

# All tests against the real services: first Debian's containerd 1.6 (e2e/k8s
# always runs its own containerd 2.x and Kubernetes), then the importer and
# end-to-end tests again on containerd 2.x. CI runs this.
test: setup lint build
	$(GO) test $(GOTEST_FLAGS) ./...
	IMAGEDROP_TEST_CONTAINERD=$(CONTAINERD2) $(GO) test $(GOTEST_FLAGS) ./importer/... $$($(GO) list ./e2e/... | grep -v /e2e/k8s)
	$(MAKE) fuzz FUZZTIME=$(TEST_FUZZTIME)

# Each fuzz target of the importer in turn (a run fuzzes one), for FUZZTIME
# each, from one test binary built for fuzzing; what fails is kept under
# importer/testdata/fuzz/<target>/ and runs with every go test after. make
# test runs each for TEST_FUZZTIME.
FUZZTIME ?= 1m
TEST_FUZZTIME ?= 3s
FUZZ_TARGETS := $(shell grep -ho '^func Fuzz[A-Za-z]*' importer/*_test.go | cut -c6-)
fuzz:
	$(GO) test -c -fuzz . -o bin/importer.fuzz.test ./importer
	@set -eo pipefail; cache=$$($(GO) env GOCACHE)/fuzz/github.com/imagedrop/imagedrop/importer; \
	for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t for $(FUZZTIME)"; \
		(cd importer && ../bin/importer.fuzz.test -test.run '^$$' -test.fuzz "^$$t\$$" \
			-test.fuzztime $(FUZZTIME) -test.fuzzcachedir "$$cache") 2>&1 | grep -v '^fuzz: elapsed'; \
	done

# Side-by-side benchmark against ctr and crictl on a private containerd 2.x,
# then on Debian's containerd 1.6, written to BENCHMARKS.md (keeping the notes
# written by hand between its markers; the program is bench/). Takes about 40
# minutes and needs ~15 GiB free in TMPDIR (and ~0.5 GiB in /dev/shm, for the
# list case's control: -memory-dir); `make bench BENCH_FLAGS=-quick`
# is a small run for development, BENCH_FLAGS=-containerd=$(CONTAINERD2)
# leaves 1.6 out. BENCH_FLAGS=-cases=verify,bundle runs only those cases (and
# generates only their inputs; `go run ./bench -h` lists the keys). The bundle
# case (12) at its default -bundle-size 4GiB compresses ~17 GiB (one file and
# one per image) with zstd -12 --long=27 and needs ~25 GiB more of TMPDIR; the
# -19 of published bundles compresses at ~3 MiB/s per core here (hours) and
# decodes at much the same speed, so -bundle-zstd-level=19 is left to a
# dedicated run. The scaling case (13, -cases=scaling) writes the same image
# at -scaling-sizes (1,4,16GiB) one size at a time and needs ~3× the largest
# free (~52 GiB), or skips that size with a note: run it alone to leave room.
# A full run with the bundle has not been timed yet.
BENCH_CONTAINERDS ?= $(CONTAINERD2),/usr/bin/containerd
BENCH_FLAGS ?=
# The pod case (14) starts a single-node cluster (make setup builds it) and
# holds /tmp/k8s-e2e.lock meanwhile, as cluster tests do (-cluster-lock).
bench: setup build $(CRICTL)
	$(GO) run ./bench -out BENCHMARKS.md -imagedrop $(BIN) -containerd $(BENCH_CONTAINERDS) -crictl $(CRICTL) $(BENCH_FLAGS)

# crictl, the peer of the benchmark's list case (about 30 s to build).
$(CRICTL):
	GOBIN=$(CACHE)/bin CGO_ENABLED=0 $(GO) install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0

# The DaemonSet of deploy/ on a real single-node Kubernetes (etcd, control
# plane and kubelet on a private containerd 2.x), started by the test.
test-k8s: setup
	$(GO) test -race -count=1 -timeout 30m ./e2e/k8s/

test-unit:
	$(GO) test -race -short ./...

clean:
	rm -rf bin
