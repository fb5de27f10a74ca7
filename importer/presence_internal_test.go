package importer

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestProcessGone(t *testing.T) {
	self := processID()
	if len(strings.Fields(self)) != 3 {
		t.Fatalf("processID() = %q, want pid namespace, pid and start time", self)
	}
	ns := strings.Fields(self)[0]
	// A process that ran and exited: its pid is free, or taken by another
	// process started later.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	exited := fmt.Sprintf("%s %d %s", ns, cmd.Process.Pid, startTime("self"))
	for _, tt := range []struct {
		name, id string
		want     bool
	}{
		{"this process", self, false},
		{"this pid started at another time", fmt.Sprintf("%s %d 1", ns, os.Getpid()), true},
		{"an exited process", exited, true},
		{"another pid namespace", fmt.Sprintf("pid:[1] %d 1", os.Getpid()), false},
		{"no process named (an older imagedrop)", "", false},
		{"garbage", "pid x y", false},
	} {
		if got := processGone(tt.id); got != tt.want {
			t.Errorf("%s: processGone(%q) = %v, want %v", tt.name, tt.id, got, tt.want)
		}
	}
}
