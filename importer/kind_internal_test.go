package importer

import "testing"

func TestKindOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		path string
		want Kind // "" for a name imagedrop ignores
	}{
		{"a.tar", KindArchive},
		{"/x/y/A.TAR", KindArchive},
		{"a.tar.gz", KindArchive},
		{"a.tgz", KindArchive},
		{"a.tar.zst", KindArchive},
		{"a.TZST", KindArchive},
		{"a.tar.lz4", KindArchive},
		{"a.tar.bz2", KindArchive},
		{"a.tbz", KindArchive},
		{"images.txt", KindList},
		{"IMAGES.TXT", KindList},
		{"a.gz", ""},
		{"a.zst", ""},
		{"a.tar.xz", ""},
		{"tar", ""},
		{"notes.md", ""},
		{"a.tar.part", ""},
	}
	for _, tt := range tests {
		got, ok := KindOf(tt.path)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("KindOf(%q) = %q, %v, want %q", tt.path, got, ok, tt.want)
		}
	}
}

func TestSuffixList(t *testing.T) {
	t.Parallel()
	want := ".tar, .tar.gz, .tgz, .tar.zst, .tzst, .tar.lz4, .tar.bz2, .tbz or .txt"
	if got := suffixList(); got != want {
		t.Errorf("suffixList() = %q, want %q", got, want)
	}
}
