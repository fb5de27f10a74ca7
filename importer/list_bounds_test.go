package importer_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/imagedrop/imagedrop/importer"
)

// TestParseListQuotesShortly: an invalid line is quoted at most a few dozen
// bytes, escaped; text after a reference and a file that is no list are
// not quoted at all.
func TestParseListQuotesShortly(t *testing.T) {
	t.Parallel()
	long := "Bad/" + strings.Repeat("x", 200) + secret
	tests := []struct {
		name, line, want string
	}{
		{"long invalid line cut", long, `"Bad/xxxxxxxxxxxxxxxxxxxxxxxxxxxx"…`},
		{"control bytes escaped", "Bad\x1b[31m\x07", `"Bad\x1b[31m\a"`},
		{"text after a reference not quoted", "busybox:1 " + secret, `"busybox:1": unexpected text after the reference`},
		{"an image ID quotes no more", strings.Repeat("ab", 32), `an image ID, not a reference`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			list, err := importer.ParseList(strings.NewReader("busybox\n" + tt.line + "\nnginx\n"))
			if err != nil || len(list.Invalid) != 1 {
				t.Fatalf("ParseList = %+v, %v; want one invalid line", list, err)
			}
			msg := list.Invalid[0].Error()
			if !strings.Contains(msg, tt.want) || strings.Contains(msg, "imagedrop-test-secret") || len(msg) > 160 ||
				strings.ContainsAny(msg, "\x1b\x07") {
				t.Errorf("error %q: want it under 160 bytes, escaped, with %s and nothing after", msg, tt.want)
			}
		})
	}
}

// TestParseListNotAList: a text file most of whose lines are no reference
// fails whole, with one short error that quotes none of it.
func TestParseListNotAList(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("daemon\n") // a valid reference, as a host file may have
	for i := range 20 {
		fmt.Fprintf(&b, "user%d:%s:19000:0:99999:7:::\n", i, secret)
	}
	_, err := importer.ParseList(strings.NewReader(b.String()))
	if !errors.Is(err, importer.ErrNotAList) || !importer.IsPermanent(err) {
		t.Fatalf("error = %v, want permanent %v", err, importer.ErrNotAList)
	}
	want := "does not look like an image list: 20 of 21 lines are not image references (the first is line 2)"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

// TestListOverReferenceCap: a list of 20 000 references fails whole on
// --max-list-references before any pull, with a short error and a small
// result.
func TestListOverReferenceCap(t *testing.T) {
	e := newListEnv(t)
	var b strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&b, "%s/r%d\n", e.prefix, i)
	}
	p := e.write("huge.txt", b.String())
	res, err := e.importer().Process(e.ctx(), importer.Input{Root: e.dir, Path: p})
	if !errors.Is(err, importer.ErrTooManyReferences) || !importer.IsPermanent(err) {
		t.Fatalf("error = %v, want permanent %v", err, importer.ErrTooManyReferences)
	}
	if want := "line 1001: too many references: more than 1000 (--max-list-references)"; !strings.Contains(err.Error(), want) {
		t.Errorf("error = %q, want it to say %q", err, want)
	}
	checkSmall(t, res, err)
	if n := e.obs.counts(); len(n) != 0 {
		t.Errorf("pulls = %v, want none", n)
	}
	if got := e.obs.refusals(); !slices.Equal(got, []string{importer.RefusedListReferences}) {
		t.Errorf("refusals reported = %q, want [%s]", got, importer.RefusedListReferences)
	}
}

// TestListOverSizeCap: a list file over --max-list-size fails unread.
func TestListOverSizeCap(t *testing.T) {
	e := newListEnv(t)
	p := e.write("big.txt", strings.Repeat("# padding\n", 2000))
	_, err := e.importer(func(c *importer.Config) { c.MaxListSize = 4096 }).Process(e.ctx(), importer.Input{Root: e.dir, Path: p})
	if !importer.IsPermanent(err) || !strings.Contains(err.Error(), "list too large: 20000 bytes, over --max-list-size (4096 bytes)") {
		t.Errorf("error = %v, want a permanent error naming --max-list-size", err)
	}
	if got := e.obs.refusals(); !slices.Equal(got, []string{importer.RefusedListSize}) {
		t.Errorf("refusals reported = %q, want [%s]", got, importer.RefusedListSize)
	}
}

// TestListResultBounded: a list whose 300 references all fail keeps
// counts of all, details of ListSample, and an error of at most
// MaxErrorLength bytes that names a few.
func TestListResultBounded(t *testing.T) {
	e := newListEnv(t)
	var b strings.Builder
	for i := range 300 {
		fmt.Fprintf(&b, "%s/%s/absent-%d:1\n", e.reg.Host, e.prefix, i)
	}
	p := e.write("absent.txt", b.String())
	res, err := e.importer().Process(e.ctx(), importer.Input{Root: e.dir, Path: p})
	if !errors.Is(err, importer.ErrReferencesFailed) {
		t.Fatalf("error = %v, want %v", err, importer.ErrReferencesFailed)
	}
	if !strings.HasPrefix(err.Error(), "import "+p+": 300 of 300 references failed: absent.txt:1: ") {
		t.Errorf("error = %q, want it to count and name the failures", err)
	}
	if res.Counts == nil || *res.Counts != (importer.ReferenceCounts{Failed: 300}) {
		t.Errorf("counts = %+v, want 300 failed", res.Counts)
	}
	if len(res.References) != 50 || res.ReferencesOmitted != 250 || res.References[0].Line != 1 {
		t.Errorf("references: %d kept from line %d, %d omitted; want 50 from line 1, 250 omitted",
			len(res.References), res.References[0].Line, res.ReferencesOmitted)
	}
	checkSmall(t, res, err)
}

// checkSmall asserts that a list's error and result stay small whatever
// the list's size: the error within MaxErrorLength, the result's JSON
// within 64 KiB.
func checkSmall(t *testing.T, res importer.Result, err error) {
	t.Helper()
	if n := len(err.Error()); n > importer.DefaultConfig().MaxErrorLength {
		t.Errorf("error of %d bytes, want at most %d", n, importer.DefaultConfig().MaxErrorLength)
	}
	b, jerr := json.Marshal(res)
	if jerr != nil {
		t.Fatal(jerr)
	}
	if len(b) > 64<<10 {
		t.Errorf("result of %d bytes as JSON, want at most 64 KiB", len(b))
	}
}
