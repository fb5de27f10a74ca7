package main

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode"
)

// dockerfileStage is what the final stage of a Dockerfile sets, as far as
// the image config goes.
type dockerfileStage struct {
	args         map[string]string // ARG name → default
	labels       map[string]string // with $ARG references left as written
	copyDest     string
	user         string
	exposed      []string // "9365/tcp"
	entrypoint   []string
	cmd          []string
	instructions []string // in order, upper case
}

// parseDockerfile reads the final stage of the Dockerfile at path: the
// instructions after its last FROM, with line continuations joined and
// comments dropped. ENTRYPOINT and CMD must be in exec (JSON) form.
func parseDockerfile(path string) (dockerfileStage, error) {
	f, err := os.Open(path)
	if err != nil {
		return dockerfileStage{}, err
	}
	defer f.Close()
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		return dockerfileStage{}, err
	}
	var st dockerfileStage
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		instr, rest = strings.ToUpper(instr), strings.TrimSpace(rest)
		if instr == "FROM" {
			st = dockerfileStage{args: map[string]string{}, labels: map[string]string{}}
			continue
		}
		st.instructions = append(st.instructions, instr)
		if err := st.apply(instr, rest); err != nil {
			return dockerfileStage{}, fmt.Errorf("%s: %s: %w", path, l, err)
		}
	}
	return st, nil
}

func (st *dockerfileStage) apply(instr, rest string) error {
	switch instr {
	case "ARG":
		name, def, _ := strings.Cut(rest, "=")
		st.args[name] = def
	case "LABEL":
		words, err := shellWords(rest)
		if err != nil {
			return err
		}
		for _, w := range words {
			k, v, ok := strings.Cut(w, "=")
			if !ok {
				return fmt.Errorf("label %q without =", w)
			}
			st.labels[k] = v
		}
	case "COPY":
		words := strings.Fields(rest)
		st.copyDest = words[len(words)-1]
	case "USER":
		st.user = rest
	case "EXPOSE":
		for _, p := range strings.Fields(rest) {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			st.exposed = append(st.exposed, p)
		}
	case "ENTRYPOINT":
		return json.Unmarshal([]byte(rest), &st.entrypoint)
	case "CMD":
		return json.Unmarshal([]byte(rest), &st.cmd)
	}
	return nil
}

// expand replaces $NAME and ${NAME} in s with vars[NAME].
func expand(s string, vars map[string]string) string {
	return os.Expand(s, func(name string) string { return vars[name] })
}

// shellWords splits s at unquoted spaces, removing double quotes.
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	quoted, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case unicode.IsSpace(r) && !quoted:
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// untar extracts the regular files and directories of the tar at path into
// dir.
func untar(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(target, 0o755)
		case tar.TypeReg:
			var data []byte
			data, err = io.ReadAll(tr)
			if err == nil {
				err = os.WriteFile(target, data, 0o644)
			}
		default:
			err = fmt.Errorf("%s: unexpected type %c", h.Name, h.Typeflag)
		}
		if err != nil {
			return err
		}
	}
}
