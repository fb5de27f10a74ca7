package main

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionOutput(t *testing.T) {
	t.Parallel()
	platform := runtime.GOOS + "/" + runtime.GOARCH
	vcs := func(settings ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{GoVersion: "go1.26.6", Main: debug.Module{Path: "github.com/imagedrop/imagedrop", Version: "(devel)"}}
		for i := 0; i+1 < len(settings); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return bi
	}
	installed := vcs()
	installed.Main.Version = "v1.4.0"
	for _, tt := range []struct {
		name              string
		ldVersion, commit string
		bi                *debug.BuildInfo
		want              string
	}{
		{"make build: ldflags, no VCS stamp", "v1.2.3-4-gabcdef0", "abcdef0123", vcs(),
			"imagedrop v1.2.3-4-gabcdef0\ncommit: abcdef0123\ngo: go1.26.6 " + platform + "\n"},
		{"VCS stamp wins over the ldflag", "v1.2.3", "stale", vcs("vcs.revision", "0123456789abcdef", "vcs.modified", "false"),
			"imagedrop v1.2.3\ncommit: 0123456789abcdef\ngo: go1.26.6 " + platform + "\n"},
		{"modified tree", "", "", vcs("vcs.revision", "0123456789abcdef", "vcs.modified", "true"),
			"imagedrop dev\ncommit: 0123456789abcdef (modified)\ngo: go1.26.6 " + platform + "\n"},
		{"go install at a version", "", "", installed,
			"imagedrop v1.4.0\ncommit: unknown\ngo: go1.26.6 " + platform + "\n"},
		{"no build information", "", "", nil,
			"imagedrop dev\ncommit: unknown\ngo: " + runtime.Version() + " " + platform + "\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var b strings.Builder
			readBuild(tt.ldVersion, tt.commit, tt.bi).write(&b)
			if b.String() != tt.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tt.want)
			}
		})
	}
}

func TestVersionCommand(t *testing.T) {
	t.Parallel()
	var stdout strings.Builder
	if err := run(t.Context(), []string{"version"}, &stdout, &stdout); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(stdout.String(), "\n"); len(lines) != 4 || !strings.HasPrefix(lines[0], "imagedrop ") ||
		!strings.HasPrefix(lines[1], "commit: ") || lines[2] != "go: "+runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("imagedrop version printed %q; want version, commit and Go lines", stdout.String())
	}
	if got := exitCode(run(t.Context(), []string{"version", "extra"}, &stdout, &stdout), &stdout); got != 2 {
		t.Errorf("imagedrop version extra: exit %d; want 2", got)
	}
}
