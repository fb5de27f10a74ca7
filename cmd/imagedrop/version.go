package main

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Set at build time: -ldflags "-X main.version=v1.2.3 -X main.commit=SHA"
// (the Makefile, deploy/Dockerfile and deploy/imagebuild do).
var (
	version = ""
	commit  = ""
)

// buildInfo is what `imagedrop version` prints.
type buildInfo struct {
	version  string
	commit   string
	modified bool // the working tree had uncommitted changes
	goVer    string
	platform string
}

// currentBuild describes this binary.
func currentBuild() buildInfo {
	bi, _ := debug.ReadBuildInfo()
	return readBuild(version, commit, bi)
}

// readBuild combines the linker's version and commit with the Go build
// information (nil if absent): the version set with -X, else the module's
// (`go install …@v1.2.3`), else "dev"; the commit Go stamped from the VCS
// (vcs.revision), else the one set with -X, else "unknown".
func readBuild(ldVersion, ldCommit string, bi *debug.BuildInfo) buildInfo {
	b := buildInfo{version: ldVersion, commit: ldCommit, goVer: runtime.Version(), platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		b.goVer = bi.GoVersion
		if b.version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.commit = s.Value
			case "vcs.modified":
				b.modified = s.Value == "true"
			}
		}
	}
	if b.version == "" {
		b.version = "dev"
	}
	if b.commit == "" {
		b.commit = "unknown"
	}
	return b
}

func (b buildInfo) write(w io.Writer) {
	modified := ""
	if b.modified {
		modified = " (modified)"
	}
	fmt.Fprintf(w, "imagedrop %s\ncommit: %s%s\ngo: %s %s\n", b.version, b.commit, modified, b.goVer, b.platform)
}

// buildVersion is the version alone, for the log and the build_info metric.
func buildVersion() string { return currentBuild().version }

func runVersion(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return usageError{errors.New("version takes no arguments")}
	}
	currentBuild().write(stdout)
	return nil
}
