package importer_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/imagedrop/imagedrop/importer"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseList(t *testing.T) {
	t.Parallel()
	type entry struct {
		line      int
		reference string
		image     string
	}
	type invalid struct {
		line int
		text string
		why  string // part of the reason
	}
	tests := []struct {
		name    string
		in      string
		want    []entry
		invalid []invalid
		wantErr error
	}{
		{name: "empty", in: ""},
		{name: "only comments and blanks", in: "# images\n\n   \n\t# indented comment\n"},
		{
			name: "normalised",
			in:   "busybox\nbusybox:1.36\nquay.io/org/app:v2\nlocalhost:5000/team/app\n",
			want: []entry{
				{1, "docker.io/library/busybox:latest", "docker.io/library/busybox:latest"},
				{2, "docker.io/library/busybox:1.36", "docker.io/library/busybox:1.36"},
				{3, "quay.io/org/app:v2", "quay.io/org/app:v2"},
				{4, "localhost:5000/team/app:latest", "localhost:5000/team/app:latest"},
			},
		},
		{
			name: "CRLF, whitespace, BOM and trailing comments",
			in:   "\ufeffbusybox:1.36\r\n  nginx:1.27 # the web server\r\n\tredis:7\t#cache\r\n\r\n",
			want: []entry{
				{1, "docker.io/library/busybox:1.36", "docker.io/library/busybox:1.36"},
				{2, "docker.io/library/nginx:1.27", "docker.io/library/nginx:1.27"},
				{3, "docker.io/library/redis:7", "docker.io/library/redis:7"},
			},
		},
		{
			name: "duplicates pulled once, first line kept",
			in:   "busybox\ndocker.io/library/busybox:latest\nnginx\nbusybox:latest # again\n",
			want: []entry{
				{1, "docker.io/library/busybox:latest", "docker.io/library/busybox:latest"},
				{3, "docker.io/library/nginx:latest", "docker.io/library/nginx:latest"},
			},
		},
		{
			name: "digests",
			in:   "busybox@" + testDigest + "\nquay.io/org/app:v2@" + testDigest + "\ndocker.io/library/busybox:1.36@" + testDigest + "\n",
			want: []entry{
				{1, "docker.io/library/busybox@" + testDigest, "docker.io/library/busybox@" + testDigest},
				{2, "quay.io/org/app:v2@" + testDigest, "quay.io/org/app@" + testDigest},
				// The same image as line 1 once the tag is dropped, as the CRI does.
			},
		},
		{
			name: "invalid lines reported with line numbers, others kept",
			in: "busybox\nUpper/Case\nnginx extra words\nhttp://example.com/app:1\nredis:7\nbusybox@sha256:abc\n" +
				"app:tag:tag\nbusybox#nocomment\na\nb\nc\nd\n",
			want: []entry{
				{1, "docker.io/library/busybox:latest", "docker.io/library/busybox:latest"},
				{5, "docker.io/library/redis:7", "docker.io/library/redis:7"},
				{9, "docker.io/library/a:latest", "docker.io/library/a:latest"},
				{10, "docker.io/library/b:latest", "docker.io/library/b:latest"},
				{11, "docker.io/library/c:latest", "docker.io/library/c:latest"},
				{12, "docker.io/library/d:latest", "docker.io/library/d:latest"},
			},
			invalid: []invalid{
				{2, "Upper/Case", "must be lowercase"},
				{3, "nginx", "unexpected text after the reference"},
				{4, "http://example.com/app:1", "invalid reference format"},
				{6, "busybox@sha256:abc", "invalid"},
				{7, "app:tag:tag", "invalid reference format"},
				{8, "busybox#nocomment", "invalid reference format"},
			},
		},
		{
			name: "a line of exactly 4 KiB is fine",
			in:   "busybox\n" + strings.Repeat(" ", importer.MaxListLine-len("nginx")) + "nginx\r\n",
			want: []entry{
				{1, "docker.io/library/busybox:latest", "docker.io/library/busybox:latest"},
				{2, "docker.io/library/nginx:latest", "docker.io/library/nginx:latest"},
			},
		},
		{name: "line over 4 KiB", in: "busybox\n# " + strings.Repeat("x", importer.MaxListLine) + "\nnginx\n", wantErr: importer.ErrLineTooLong},
		{name: "huge line without newline", in: strings.Repeat("a", 1<<20), wantErr: importer.ErrLineTooLong},
		{name: "NUL bytes", in: "busybox\nnginx\x00\n", wantErr: importer.ErrNotText},
		{name: "binary file", in: "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\xfe", wantErr: importer.ErrNotText},
		{name: "invalid UTF-8", in: "busybox # caf\xe9\n", wantErr: importer.ErrNotText},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			list, err := importer.ParseList(strings.NewReader(tt.in))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParseList error = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "line ") {
					t.Errorf("error %q does not name the line", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseList: %v", err)
			}
			var got []entry
			for _, e := range list.Entries {
				got = append(got, entry{e.Line, e.Reference, e.Image})
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("entries =\n%v\nwant\n%v", got, tt.want)
			}
			if len(list.Invalid) != len(tt.invalid) {
				t.Fatalf("invalid = %v, want %d lines", list.Invalid, len(tt.invalid))
			}
			for i, w := range tt.invalid {
				g := list.Invalid[i]
				if g.Line != w.line || g.Text != w.text || !strings.Contains(g.Error(), w.why) ||
					!strings.HasPrefix(g.Error(), fmt.Sprintf("line %d: ", w.line)) {
					t.Errorf("invalid[%d] = line %d %q: %v; want line %d %q: …%s…", i, g.Line, g.Text, g, w.line, w.text, w.why)
				}
			}
		})
	}
}

func TestParseListLineNumberOfLongLine(t *testing.T) {
	t.Parallel()
	in := "a\nb\n" + strings.Repeat("c", importer.MaxListLine+1) + "\nd\n"
	_, err := importer.ParseList(strings.NewReader(in))
	if err == nil || !strings.HasPrefix(err.Error(), "line 3: ") {
		t.Errorf("error = %v, want it to start with \"line 3: \"", err)
	}
}

func FuzzParseList(f *testing.F) {
	for _, s := range []string{
		"",
		"busybox\n",
		"# comment\r\nnginx:1.27 # web\r\n\r\n",
		"busybox@" + testDigest + "\nquay.io/org/app:v2@" + testDigest + "\n",
		"Upper\nnginx extra\nbusybox\nbusybox\n",
		"\ufeffbusybox",
		"localhost:5000/a/b/c:tag",
		"a\x00b",
		"caf\xe9",
		strings.Repeat("x", importer.MaxListLine+1),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := importer.ParseList(strings.NewReader(string(data)))
		if err != nil {
			if !errors.Is(err, importer.ErrLineTooLong) && !errors.Is(err, importer.ErrNotText) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		last := 0
		for _, e := range list.Entries {
			if e.Line <= last {
				t.Fatalf("entries out of order: line %d after %d", e.Line, last)
			}
			last = e.Line
			if seen[e.Image] {
				t.Fatalf("image %s listed twice", e.Image)
			}
			seen[e.Image] = true
			// A normalised reference normalises to itself.
			again, err := importer.ParseList(strings.NewReader(e.Reference))
			if err != nil || len(again.Entries) != 1 || again.Entries[0].Reference != e.Reference || again.Entries[0].Image != e.Image {
				t.Fatalf("%q does not normalise to itself: %+v, %v", e.Reference, again, err)
			}
		}
		for _, inv := range list.Invalid {
			if inv.Line < 1 || inv.Err == nil || inv.Text == "" {
				t.Fatalf("bad invalid line: %+v", inv)
			}
		}
	})
}
