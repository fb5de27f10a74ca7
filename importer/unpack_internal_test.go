package importer

import (
	"fmt"
	"slices"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
)

// chainsOf returns the chain IDs of layers named by letters, base first.
func chainsOf(layers string) []digest.Digest {
	var diffIDs []digest.Digest
	for _, l := range layers {
		diffIDs = append(diffIDs, digest.FromString(string(l)))
	}
	return identity.ChainIDs(diffIDs)
}

// TestUnpackPlan runs unpackPlan as unpack does, finishing the running job
// that started first (or last): every job runs once, at most limit at
// once, and no chain is extracted by two jobs.
func TestUnpackPlan(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		images []string // each image's layers
		limit  int
		// most jobs running at once, finishing the first or the last started
		wantMost [2]int
	}{
		{"independent", []string{"a", "b", "c", "d"}, 2, [2]int{2, 2}},
		{"one base", []string{"ab", "ac", "ad", "ae", "af"}, 3, [2]int{3, 3}},
		{"nested bases", []string{"abc", "abd", "ab", "abde", "x", "xy"}, 4, [2]int{3, 2}},
		{"same image twice", []string{"ab", "ab"}, 2, [2]int{1, 1}},
		{"sequential", []string{"ab", "ac", "b"}, 1, [2]int{1, 1}},
	} {
		for order, lastFirst := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/last-first-%v", tt.name, lastFirst), func(t *testing.T) {
				t.Parallel()
				var jobs []unpackJob
				for _, layers := range tt.images {
					jobs = append(jobs, unpackJob{chains: chainsOf(layers)})
				}
				p := newUnpackPlan(jobs)
				extracted := map[digest.Digest]int{}
				var running, ran []int
				most := 0
				for !p.finished() || len(running) > 0 {
					for len(running) < tt.limit {
						i, ok := p.next()
						if !ok {
							break
						}
						for _, c := range jobs[i].chains {
							if !p.done[c] { // what containerd's Unpack does not find
								extracted[c]++
							}
						}
						running = append(running, i)
						ran = append(ran, i)
					}
					most = max(most, len(running))
					if len(running) == 0 {
						t.Fatalf("nothing running, %d jobs pending", len(p.pending))
					}
					k := 0
					if lastFirst {
						k = len(running) - 1
					}
					p.release(running[k])
					running = slices.Delete(running, k, k+1)
				}
				slices.Sort(ran)
				var want []int
				for i := range jobs {
					want = append(want, i)
				}
				if !slices.Equal(ran, want) {
					t.Errorf("jobs run = %v, want each of %v once", ran, want)
				}
				for c, n := range extracted {
					if n != 1 {
						t.Errorf("chain %s extracted %d times, want once", c, n)
					}
				}
				if most != tt.wantMost[order] {
					t.Errorf("most jobs at once = %d, want %d (limit %d)", most, tt.wantMost[order], tt.limit)
				}
			})
		}
	}
}
