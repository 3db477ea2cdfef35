package view

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// JSONPath is a parsed kubectl -o jsonpath template: text with {...}
// actions. It implements the subset users type:
//
//	{.a.b}                 a field (missing fields print nothing)
//	{.a[0].b} {.a[-1]}     an index (negative from the end)
//	{.a[1:3]}              a slice
//	{.a[*].b} {.a.*}       every item or value; several results are
//	                       printed separated by a space
//	{.a['key.with.dots']}  a quoted field name
//	{.a[?(@.type=="Ready")].status}
//	                       a filter: ==, !=, <, <=, >, >= against a
//	                       string, number or boolean, or @.x alone (exists)
//	{range .items[*]}{.metadata.name}{"\n"}{end}
//	                       a loop; inside it paths start at the item ($ is
//	                       the root)
//	{"text"}               a string literal (Go escapes)
//
// Strings and numbers print as they are, objects and lists as compact
// JSON; nothing is added at the end (no newline), as with kubectl.
type JSONPath struct {
	src   string
	nodes []tnode
}

type tnodeKind int

const (
	tText tnodeKind = iota
	tPath
	tRange
)

type tnode struct {
	kind tnodeKind
	text string
	path []step
	body []tnode
}

type stepKind int

const (
	sRoot stepKind = iota
	sField
	sWildcard
	sIndex
	sSlice
	sFilter
)

type step struct {
	kind   stepKind
	name   string
	index  int
	lo, hi *int
	filter *filterExpr
}

type filterExpr struct {
	left, right operand
	op          string // "" tests that left exists
}

type operand struct {
	path    []step // when not a literal
	literal any
	isLit   bool
}

// ParseJSONPath parses a template.
func ParseJSONPath(tmpl string) (*JSONPath, error) {
	p := &tparser{s: tmpl}
	nodes, closed, err := p.parseNodes(false)
	if err != nil {
		return nil, fmt.Errorf("jsonpath %q: %w", tmpl, err)
	}
	if closed {
		return nil, fmt.Errorf("jsonpath %q: {end} without {range}", tmpl)
	}
	return &JSONPath{src: tmpl, nodes: nodes}, nil
}

// String returns the template.
func (j *JSONPath) String() string { return j.src }

type tparser struct {
	s   string
	pos int
}

// parseNodes reads nodes until the end of the template or, in a range,
// its {end} (closed reports which).
func (p *tparser) parseNodes(inRange bool) ([]tnode, bool, error) {
	var nodes []tnode
	for p.pos < len(p.s) {
		open := strings.IndexByte(p.s[p.pos:], '{')
		if open < 0 {
			nodes = append(nodes, tnode{kind: tText, text: p.s[p.pos:]})
			p.pos = len(p.s)
			break
		}
		if open > 0 {
			nodes = append(nodes, tnode{kind: tText, text: p.s[p.pos : p.pos+open]})
		}
		start := p.pos + open + 1
		end, err := matchClose(p.s, start, '}')
		if err != nil {
			return nil, false, err
		}
		action := strings.TrimSpace(p.s[start:end])
		p.pos = end + 1
		switch {
		case action == "end":
			// Outside a range, ParseJSONPath reports the stray {end}.
			return nodes, true, nil
		case strings.HasPrefix(action, "range ") || strings.HasPrefix(action, "range\t"):
			path, err := parsePath(strings.TrimSpace(action[len("range"):]))
			if err != nil {
				return nil, false, err
			}
			body, closed, err := p.parseNodes(true)
			if err != nil {
				return nil, false, err
			}
			if !closed {
				return nil, false, errors.New("{range} without {end}")
			}
			nodes = append(nodes, tnode{kind: tRange, path: path, body: body})
		case strings.HasPrefix(action, `"`) || strings.HasPrefix(action, "'"):
			lit, err := unquote(action)
			if err != nil {
				return nil, false, err
			}
			nodes = append(nodes, tnode{kind: tText, text: lit})
		default:
			path, err := parsePath(action)
			if err != nil {
				return nil, false, err
			}
			nodes = append(nodes, tnode{kind: tPath, path: path})
		}
	}
	return nodes, false, nil
}

// matchClose finds the closer of a bracket opened before start, skipping
// quoted strings and nested brackets.
func matchClose(s string, start int, closer byte) (int, error) {
	depth := 0
	for i := start; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\'':
			j := i + 1
			for ; j < len(s) && s[j] != c; j++ {
				if s[j] == '\\' && c == '"' {
					j++
				}
			}
			if j >= len(s) {
				return 0, fmt.Errorf("unterminated string at %d", i)
			}
			i = j
		case '(', '[':
			depth++
		case ')', ']':
			if depth > 0 {
				depth--
			}
			if depth == 0 && c == closer {
				return i, nil
			}
		case '{':
			if closer == '}' {
				return 0, fmt.Errorf("unexpected { at %d", i)
			}
		case '}':
			if closer == '}' && depth == 0 {
				return i, nil
			}
		}
	}
	return 0, fmt.Errorf("unclosed %q", opener(closer))
}

func opener(closer byte) string {
	switch closer {
	case ']':
		return "["
	case ')':
		return "("
	}
	return "{"
}

func unquote(s string) (string, error) {
	if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' {
		return s[1 : len(s)-1], nil
	}
	u, err := strconv.Unquote(s)
	if err != nil {
		return "", fmt.Errorf("bad string literal %s", s)
	}
	return u, nil
}

func parsePath(s string) ([]step, error) {
	if s == "" {
		return nil, errors.New("empty expression")
	}
	var steps []step
	i := 0
	switch s[0] {
	case '$':
		steps = append(steps, step{kind: sRoot})
		i++
	case '@':
		i++
	}
	for i < len(s) {
		switch s[i] {
		case '.':
			i++
			if i == len(s) || s[i] == '[' {
				continue
			}
			if s[i] == '.' {
				return nil, fmt.Errorf("recursive descent (..) is not supported in %q", s)
			}
			j := i
			for j < len(s) && s[j] != '.' && s[j] != '[' {
				j++
			}
			name := s[i:j]
			if name == "*" {
				steps = append(steps, step{kind: sWildcard})
			} else {
				steps = append(steps, step{kind: sField, name: name})
			}
			i = j
		case '[':
			end, err := matchClose(s, i, ']')
			if err != nil {
				return nil, err
			}
			st, err := parseBracket(strings.TrimSpace(s[i+1 : end]))
			if err != nil {
				return nil, fmt.Errorf("%q: %w", s, err)
			}
			steps = append(steps, st)
			i = end + 1
		default:
			if i == 0 {
				// A bare first name, as in {status.state}.
				j := i
				for j < len(s) && s[j] != '.' && s[j] != '[' {
					j++
				}
				steps = append(steps, step{kind: sField, name: s[i:j]})
				i = j
				continue
			}
			return nil, fmt.Errorf("unexpected %q at %d in %q", s[i], i, s)
		}
	}
	return steps, nil
}

func parseBracket(c string) (step, error) {
	switch {
	case c == "*":
		return step{kind: sWildcard}, nil
	case strings.HasPrefix(c, "?"):
		inner := strings.TrimSpace(c[1:])
		if !strings.HasPrefix(inner, "(") || !strings.HasSuffix(inner, ")") {
			return step{}, fmt.Errorf("filter %q: want [?(...)]", c)
		}
		f, err := parseFilter(strings.TrimSpace(inner[1 : len(inner)-1]))
		if err != nil {
			return step{}, err
		}
		return step{kind: sFilter, filter: f}, nil
	case strings.HasPrefix(c, "'") || strings.HasPrefix(c, `"`):
		name, err := unquote(c)
		if err != nil {
			return step{}, err
		}
		return step{kind: sField, name: name}, nil
	case strings.Contains(c, ":"):
		lo, hi, _ := strings.Cut(c, ":")
		st := step{kind: sSlice}
		for _, b := range []struct {
			s   string
			dst **int
		}{{lo, &st.lo}, {hi, &st.hi}} {
			if b.s = strings.TrimSpace(b.s); b.s == "" {
				continue
			}
			n, err := strconv.Atoi(b.s)
			if err != nil {
				return step{}, fmt.Errorf("bad slice [%s]", c)
			}
			*b.dst = &n
		}
		return st, nil
	}
	n, err := strconv.Atoi(c)
	if err != nil {
		return step{}, fmt.Errorf("bad index [%s]", c)
	}
	return step{kind: sIndex, index: n}, nil
}

var filterOps = []string{"==", "!=", "<=", ">=", "<", ">"}

func parseFilter(s string) (*filterExpr, error) {
	// Find the operator outside quotes.
	at, op := -1, ""
	for i := 0; i < len(s) && at < 0; i++ {
		if s[i] == '"' || s[i] == '\'' {
			q := s[i]
			for i++; i < len(s) && s[i] != q; i++ {
			}
			continue
		}
		for _, o := range filterOps {
			if strings.HasPrefix(s[i:], o) {
				at, op = i, o
				break
			}
		}
	}
	if at < 0 {
		left, err := parseOperand(s)
		return &filterExpr{left: left}, err
	}
	left, err := parseOperand(strings.TrimSpace(s[:at]))
	if err != nil {
		return nil, err
	}
	right, err := parseOperand(strings.TrimSpace(s[at+len(op):]))
	if err != nil {
		return nil, err
	}
	return &filterExpr{left: left, right: right, op: op}, nil
}

func parseOperand(s string) (operand, error) {
	switch {
	case s == "":
		return operand{}, errors.New("empty filter operand")
	case s[0] == '@' || s[0] == '$':
		p, err := parsePath(s)
		return operand{path: p}, err
	case s[0] == '"' || s[0] == '\'':
		u, err := unquote(s)
		return operand{literal: u, isLit: true}, err
	case s == "true" || s == "false":
		return operand{literal: s == "true", isLit: true}, nil
	case s == "null":
		return operand{literal: nil, isLit: true}, nil
	}
	if _, err := strconv.ParseFloat(s, 64); err != nil {
		return operand{}, fmt.Errorf("bad filter operand %q", s)
	}
	return operand{literal: json.Number(s), isLit: true}, nil
}

// Execute writes the template evaluated against data (any value that
// encodes to JSON; it is evaluated as that JSON).
func (j *JSONPath) Execute(w io.Writer, data any) error {
	root, err := toGeneric(data)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := execNodes(&buf, j.nodes, root, root); err != nil {
		return fmt.Errorf("jsonpath %q: %w", j.src, err)
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// ExecuteJSONPath parses tmpl and evaluates it against data.
func ExecuteJSONPath(tmpl string, data any) (string, error) {
	j, err := ParseJSONPath(tmpl)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := j.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

func toGeneric(data any) (any, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

func execNodes(w *bytes.Buffer, nodes []tnode, root, cur any) error {
	for _, n := range nodes {
		switch n.kind {
		case tText:
			w.WriteString(n.text)
		case tPath:
			for i, v := range evalPath(n.path, root, cur) {
				if i > 0 {
					w.WriteByte(' ')
				}
				s, err := text(v)
				if err != nil {
					return err
				}
				w.WriteString(s)
			}
		case tRange:
			for _, v := range evalPath(n.path, root, cur) {
				if err := execNodes(w, n.body, root, v); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func text(v any) (string, error) {
	switch t := v.(type) {
	case string:
		return t, nil
	case json.Number:
		return t.String(), nil
	case bool:
		return strconv.FormatBool(t), nil
	case nil:
		return "null", nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}

// evalPath returns every value the path selects; missing fields and
// indexes out of range select nothing.
func evalPath(steps []step, root, cur any) []any {
	vals := []any{cur}
	for _, st := range steps {
		var next []any
		for _, v := range vals {
			next = append(next, evalStep(st, root, v)...)
		}
		vals = next
	}
	return vals
}

func evalStep(st step, root, v any) []any {
	switch st.kind {
	case sRoot:
		return []any{root}
	case sField:
		if m, ok := v.(map[string]any); ok {
			if c, ok := m[st.name]; ok {
				return []any{c}
			}
		}
		return nil
	case sWildcard:
		switch t := v.(type) {
		case []any:
			return t
		case map[string]any:
			keys := make([]string, 0, len(t))
			for k := range t {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			out := make([]any, 0, len(keys))
			for _, k := range keys {
				out = append(out, t[k])
			}
			return out
		}
		return nil
	case sIndex:
		a, ok := v.([]any)
		if !ok {
			return nil
		}
		i := st.index
		if i < 0 {
			i += len(a)
		}
		if i < 0 || i >= len(a) {
			return nil
		}
		return []any{a[i]}
	case sSlice:
		a, ok := v.([]any)
		if !ok {
			return nil
		}
		lo, hi := 0, len(a)
		if st.lo != nil {
			lo = *st.lo
		}
		if st.hi != nil {
			hi = *st.hi
		}
		if lo < 0 {
			lo += len(a)
		}
		if hi < 0 {
			hi += len(a)
		}
		lo, hi = max(0, min(lo, len(a))), max(0, min(hi, len(a)))
		if lo >= hi {
			return nil
		}
		return a[lo:hi]
	case sFilter:
		var items []any
		switch t := v.(type) {
		case []any:
			items = t
		default:
			items = []any{t}
		}
		var out []any
		for _, it := range items {
			if st.filter.match(root, it) {
				out = append(out, it)
			}
		}
		return out
	}
	return nil
}

func (f *filterExpr) match(root, item any) bool {
	lv, lok := f.left.value(root, item)
	if f.op == "" {
		return lok
	}
	rv, rok := f.right.value(root, item)
	if !lok || !rok {
		return f.op == "!=" && lok != rok
	}
	if ln, lnum := number(lv); lnum {
		if rn, rnum := number(rv); rnum {
			return compare(ln < rn, ln == rn, f.op)
		}
	}
	ls, lstr := lv.(string)
	rs, rstr := rv.(string)
	if lstr && rstr {
		return compare(ls < rs, ls == rs, f.op)
	}
	eq := fmt.Sprint(lv) == fmt.Sprint(rv)
	switch f.op {
	case "==":
		return eq
	case "!=":
		return !eq
	}
	return false
}

func compare(less, equal bool, op string) bool {
	switch op {
	case "==":
		return equal
	case "!=":
		return !equal
	case "<":
		return less
	case "<=":
		return less || equal
	case ">":
		return !less && !equal
	case ">=":
		return !less
	}
	return false
}

func number(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

func (o operand) value(root, item any) (any, bool) {
	if o.isLit {
		return o.literal, true
	}
	vs := evalPath(o.path, root, item)
	if len(vs) == 0 {
		return nil, false
	}
	return vs[0], true
}
