package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// importProgress shows how an import's files go. importAll tells it when a
// file starts, how much of it was read and when it ends; every line the
// command writes goes through println, and its log through Write, so that
// a terminal's progress lines stay below them.
type importProgress interface {
	io.Writer // the log
	started(i int, path string)
	read(i int, total int64)
	finished(i int)
	println(w io.Writer, line string)
	// stop ends the display; nothing is redrawn after it. It may be called
	// more than once.
	stop()
}

// Progress modes: --progress.
const (
	progressAuto  = "auto"  // lines updated in place when stderr is a terminal
	progressTTY   = "tty"   // always, even on a pipe
	progressPlain = "plain" // never: one line per file, and the log
)

// redrawEvery is how often a terminal's progress lines are redrawn at most.
const redrawEvery = 200 * time.Millisecond

// newImportProgress returns the display of mode on stderr for n files.
func newImportProgress(mode string, stderr io.Writer, n int) importProgress {
	f, isFile := stderr.(*os.File)
	tty := isFile && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb"
	if mode == progressPlain || (mode == progressAuto && !tty) {
		return plainProgress{log: stderr}
	}
	size := func() (int, int) { return 80, 24 }
	if isFile {
		size = func() (int, int) {
			w, h, err := term.GetSize(int(f.Fd()))
			if err != nil || w <= 0 || h <= 0 {
				return 80, 24
			}
			return w, h
		}
	}
	t := &terminalProgress{tty: stderr, size: size, files: make([]*runningFile, n),
		quit: make(chan struct{}), done: make(chan struct{})}
	go t.run()
	return t
}

// plainProgress writes lines as they come and shows no progress: the
// importer logs a long import's progress itself.
type plainProgress struct{ log io.Writer }

func (p plainProgress) Write(b []byte) (int, error)    { return p.log.Write(b) }
func (plainProgress) started(int, string)              {}
func (plainProgress) read(int, int64)                  {}
func (plainProgress) finished(int)                     {}
func (plainProgress) println(w io.Writer, line string) { fmt.Fprintln(w, printable(line)) }
func (plainProgress) stop()                            {}

// terminalProgress keeps one line per running file at the bottom of a
// terminal, redrawn in place (cursor up, erase) at most every redrawEvery.
type terminalProgress struct {
	tty  io.Writer
	size func() (width, height int)
	quit chan struct{}
	done chan struct{}

	stopOnce sync.Once

	mu      sync.Mutex
	files   []*runningFile // by index; nil until started
	drawn   int            // progress lines on the screen now
	stopped bool
}

// runningFile is one file of the import while it runs.
type runningFile struct {
	name     string
	size     int64
	start    time.Time
	n        atomic.Int64 // bytes read
	finished bool         // guarded by terminalProgress.mu
}

var (
	_ importProgress = plainProgress{}
	_ importProgress = (*terminalProgress)(nil)
)

func (t *terminalProgress) run() {
	defer close(t.done)
	tick := time.NewTicker(redrawEvery)
	defer tick.Stop()
	for {
		select {
		case <-t.quit:
			return
		case <-tick.C:
			t.mu.Lock()
			t.redraw(nil)
			t.mu.Unlock()
		}
	}
}

func (t *terminalProgress) started(i int, path string) {
	f := &runningFile{name: printable(path), start: time.Now()}
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() {
		f.size = st.Size()
	}
	t.mu.Lock()
	t.files[i] = f
	t.mu.Unlock()
}

// read is called by the worker that started file i, as it reads.
func (t *terminalProgress) read(i int, total int64) { t.files[i].n.Store(total) }

func (t *terminalProgress) finished(i int) {
	t.mu.Lock()
	t.files[i].finished = true
	t.mu.Unlock()
}

// Write writes a log record above the progress lines.
func (t *terminalProgress) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.redraw(func() { _, _ = t.tty.Write(b) })
	return len(b), nil
}

// println writes line to w (the same terminal, or a pipe) above the
// progress lines.
func (t *terminalProgress) println(w io.Writer, line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.redraw(func() { fmt.Fprintln(w, printable(line)) })
}

func (t *terminalProgress) stop() {
	t.stopOnce.Do(func() { close(t.quit) })
	<-t.done
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped {
		t.stopped = true
		t.clear()
	}
}

// redraw erases the progress lines, runs above (which writes lines that stay)
// if not nil, and draws the progress lines again. Called with mu held.
func (t *terminalProgress) redraw(above func()) {
	if t.stopped {
		if above != nil {
			above()
		}
		return
	}
	var running []fileProgress
	now := time.Now()
	for _, f := range t.files {
		if f != nil && !f.finished {
			running = append(running, fileProgress{name: f.name, read: f.n.Load(), size: f.size, took: now.Sub(f.start)})
		}
	}
	width, height := t.size()
	lines := progressLines(running, width, height-1)
	if len(running) == 0 {
		lines = nil
	}
	if above != nil {
		t.clear()
		above()
	}
	var b bytes.Buffer
	if above == nil {
		b.WriteString(eraseUp(t.drawn))
	}
	for _, l := range lines {
		b.WriteString("\x1b[2K" + l + "\n")
	}
	t.drawn = len(lines)
	_, _ = t.tty.Write(b.Bytes())
}

// clear erases the progress lines.
func (t *terminalProgress) clear() {
	_, _ = io.WriteString(t.tty, eraseUp(t.drawn))
	t.drawn = 0
}

// eraseUp moves the cursor up n lines to their start and erases from there
// to the end of the screen.
func eraseUp(n int) string {
	if n == 0 {
		return "\r\x1b[J"
	}
	return fmt.Sprintf("\x1b[%dA\r\x1b[J", n)
}
