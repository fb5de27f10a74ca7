package watcher

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestStateRoundTrip(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sub", "state.json")
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	want := &state{
		Version: stateVersion,
		Files: map[string]*record{
			"/images/a.tar": {
				fileStat: fileStat{Size: 42, Mtime: mtime, Inode: 7},
				Result:   ResultSuccess,
				Images:   []string{"docker.io/library/a:1"},
				Detail:   []byte(`{"refs":1}`),
				Updated:  mtime,
			},
		},
		Unpin: []string{"b", "a"},
	}
	if err := saveState(path, want); err != nil {
		t.Fatalf("saveState: %v", err)
	}
	got, err := loadState(path)
	if err != nil {
		t.Fatalf("loadState: %v", err)
	}
	r := got.Files["/images/a.tar"]
	if r == nil || !r.same(want.Files["/images/a.tar"].fileStat) || r.Result != ResultSuccess ||
		len(r.Images) != 1 || string(r.Detail) != `{"refs":1}` {
		t.Errorf("record = %+v, want %+v", r, want.Files["/images/a.tar"])
	}
	if len(got.Unpin) != 2 || got.Unpin[0] != "a" {
		t.Errorf("unpin = %q, want [a b]", got.Unpin)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("state dir holds %d entries, want only the state file", len(entries))
	}
}

func TestLoadStateProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		content  *string // nil: no file
		notExist bool
	}{
		{"missing", nil, true},
		{"truncated", ptr(`{"version":1,"files":{`), false},
		{"not json", ptr("hello"), false},
		{"other version", ptr(`{"version":99,"files":{}}`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "state.json")
			if tt.content != nil {
				if err := os.WriteFile(path, []byte(*tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			st, err := loadState(path)
			if err == nil {
				t.Fatal("loadState = nil error, want one")
			}
			if got := errors.Is(err, fs.ErrNotExist); got != tt.notExist {
				t.Errorf("errors.Is(%v, fs.ErrNotExist) = %v, want %v", err, got, tt.notExist)
			}
			if st == nil || st.Files == nil || len(st.Files) != 0 {
				t.Errorf("state = %+v, want empty", st)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
