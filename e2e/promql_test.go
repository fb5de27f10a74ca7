package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// A PromQL selector as written in a rule or a panel: a metric name and its
// label matchers. The tests find them with a small lexer rather than
// Prometheus's parser (a heavy module); Prometheus itself checks that the
// expressions parse.
type selector struct {
	name     string
	matchers []matcher
}

type matcher struct {
	label, op, value string
}

func (s selector) String() string {
	var ms []string
	for _, m := range s.matchers {
		ms = append(ms, fmt.Sprintf("%s%s%q", m.label, m.op, m.value))
	}
	return s.name + "{" + strings.Join(ms, ",") + "}"
}

// matches reports whether a series with labels satisfies every matcher
// except those on the labels in skip (target labels Prometheus adds).
func (s selector) matches(labels map[string]string, skip ...string) bool {
	for _, m := range s.matchers {
		if slices.Contains(skip, m.label) {
			continue
		}
		v := labels[m.label]
		re := regexp.MustCompile("^(?:" + m.value + ")$")
		var ok bool
		switch m.op {
		case "=":
			ok = v == m.value
		case "!=":
			ok = v != m.value
		case "=~":
			ok = re.MatchString(v)
		case "!~":
			ok = !re.MatchString(v)
		}
		if !ok {
			return false
		}
	}
	return true
}

var (
	// Label lists of aggregations and vector matching, which hold label
	// names, not metrics.
	promqlGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlToken    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|\[[^\]]*\]|[0-9][0-9a-zA-Z_.]*|[a-zA-Z_:][a-zA-Z0-9_:]*\s*(?:\{[^}]*\}|\()?|\{[^}]*\}`)
	promqlMatcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)
	promqlKeywords = []string{"and", "or", "unless", "bool", "offset", "inf", "nan"}
)

// selectors returns the selectors of expr, or an error for one without a
// metric name.
func selectors(expr string) ([]selector, error) {
	var out []selector
	for _, tok := range promqlToken.FindAllString(promqlGrouping.ReplaceAllString(expr, " "), -1) {
		switch {
		case strings.HasPrefix(tok, `"`), strings.HasPrefix(tok, "["), tok[0] >= '0' && tok[0] <= '9':
			continue // string, range or number
		case strings.HasPrefix(tok, "{"):
			return nil, fmt.Errorf("%q: selector %s has no metric name", expr, tok)
		case strings.HasSuffix(tok, "("):
			continue // function or aggregation
		}
		name, rest, _ := strings.Cut(tok, "{")
		name = strings.TrimSpace(name)
		if slices.Contains(promqlKeywords, strings.ToLower(name)) {
			continue
		}
		s := selector{name: name}
		for _, m := range promqlMatcher.FindAllStringSubmatch(rest, -1) {
			s.matchers = append(s.matchers, matcher{label: m[1], op: m[2], value: m[3]})
		}
		out = append(out, s)
	}
	return out, nil
}
