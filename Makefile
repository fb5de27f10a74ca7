# imagedrop — see README.md.
SHELL := /bin/bash
GO ?= go
CACHE ?= /var/cache/imagedrop
CONTAINERD2 := $(CACHE)/containerd-v2.4.2/bin/containerd
BIN := bin/imagedrop
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GOTEST_FLAGS ?= -race -count=1 -timeout 20m

.PHONY: all build setup demo test test-unit lint bench clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN) ./cmd/imagedrop

# Installs containerd, docker-registry, prometheus, zstd, lz4 and builds
# containerd 2.x into $(CACHE) once.
setup:
	./e2e/setup.sh >/dev/null

# Starts a throwaway containerd, runs imagedrop on a sample archive it
# generates, and shows the resulting images.
demo: setup build
	$(GO) run ./e2e/demo --imagedrop $(BIN)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...

# All tests against the real services: first Debian's containerd 1.6, then
# containerd 2.x. CI runs this.
test: setup lint
	$(GO) test $(GOTEST_FLAGS) ./...
	IMAGEDROP_TEST_CONTAINERD=$(CONTAINERD2) $(GO) test $(GOTEST_FLAGS) ./importer/... ./e2e/...

test-unit:
	$(GO) test -race -short ./...

clean:
	rm -rf bin
