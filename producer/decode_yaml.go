package producer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"

	"github.com/acmeq/acmeq/messages"
)

func (d *Decoder) nextYAML() (messages.Object, error) {
	for {
		if d.yamlEOF {
			return d.end()
		}
		startLine := d.pos.line
		d.buf = append(d.buf[:0], d.indent...)
		d.indent = nil
		lineStart := true
		for {
			frag, err := d.br.ReadSlice('\n')
			if lineStart && isDocumentSeparator(frag) {
				d.advanceFragment(frag)
				break
			}
			if len(d.buf)+len(frag) > MaxDocumentSize {
				return nil, d.fatal(d.doc+1, position{line: startLine, column: 1}, fmt.Errorf("larger than %s, the limit for one document", sizeString(MaxDocumentSize)))
			}
			d.buf = append(d.buf, frag...)
			d.peak = max(d.peak, len(d.buf))
			d.advanceFragment(frag)
			lineStart = err == nil
			if errors.Is(err, bufio.ErrBufferFull) {
				continue // the same line goes on
			}
			if errors.Is(err, io.EOF) {
				d.yamlEOF = true
				break
			}
			if err != nil {
				return nil, d.readErr(d.doc+1, err)
			}
		}
		if blankYAML(d.buf) {
			continue
		}
		obj, empty, err := d.decodeYAML(startLine)
		if empty {
			continue
		}
		return obj, err
	}
}

// advanceFragment moves pos past frag, which ends with its only '\n' if it
// has one.
func (d *Decoder) advanceFragment(frag []byte) {
	d.pos.offset += int64(len(frag))
	if n := len(frag); n > 0 && frag[n-1] == '\n' {
		d.pos.line++
		d.pos.column = 1
	} else {
		d.pos.column += n
	}
}

// decodeYAML decodes the YAML document in d.buf, whose first line is
// startLine. empty reports a document that holds nothing (only null),
// which is skipped.
//
// The document is converted to JSON by sigs.k8s.io/yaml, as kubectl does.
// Its go-yaml v2 parser would expand aliases without a bound and lets a
// key given twice pass, so a document with anchors, or that it refuses, is
// first walked as go-yaml v3 nodes (checkYAMLNodes), which find those with
// their lines. Plain documents, most of a bulk file, are parsed once.
func (d *Decoder) decodeYAML(startLine int) (obj messages.Object, empty bool, err error) {
	n := d.doc + 1
	if est := estimateYAMLValues(d.buf); est > MaxDocumentValues {
		d.doc++
		return nil, false, d.fatal(n, position{offset: -1, line: startLine}, fmt.Errorf("more than %d values, the limit for one document", MaxDocumentValues))
	}
	// fail counts the document and stops the input after a fatal error.
	fail := func(e *DecodeError) (messages.Object, bool, error) {
		d.doc++
		d.done = d.done || e.Fatal
		return nil, false, e
	}
	walked := false
	if bytes.IndexByte(d.buf, '&') >= 0 {
		walked = true
		empty, derr := checkYAMLNodes(d.buf, n, startLine)
		if empty {
			return nil, true, nil
		}
		if derr != nil {
			return fail(derr)
		}
	}
	j, err := yaml.YAMLToJSONStrict(d.buf)
	if err != nil {
		if !walked {
			empty, derr := checkYAMLNodes(d.buf, n, startLine)
			if empty {
				return nil, true, nil
			}
			if derr != nil {
				return fail(derr)
			}
		}
		line, msg := yamlErrorLine(err)
		l, _ := yamlPosition(d.buf, line, 0)
		return fail(&DecodeError{Document: n, Line: startLine + l - 1, Offset: -1, Fatal: true, Err: fmt.Errorf("invalid YAML: %s", msg)})
	}
	if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
		return nil, true, nil
	}
	// Offsets into the JSON say nothing about the YAML: errors name the
	// field's path instead.
	o, derr := decodeDocument(n, j, nil)
	if derr != nil {
		if derr.Fatal && !walked {
			// Nested too deep: the nodes say where.
			if _, nerr := checkYAMLNodes(d.buf, n, startLine); nerr != nil {
				return fail(nerr)
			}
		}
		return fail(derr)
	}
	d.doc++
	return o, false, nil
}

// checkYAMLNodes parses doc, document n starting at startLine, as go-yaml
// v3 nodes and walks them for keys given twice, nesting over
// MaxDocumentDepth and more than MaxDocumentValues values with aliases
// expanded. empty reports a document that holds nothing.
func checkYAMLNodes(doc []byte, n, startLine int) (empty bool, err *DecodeError) {
	at := func(line, column int) position {
		l, c := yamlPosition(doc, line, column)
		return position{offset: -1, line: startLine + l - 1, column: c}
	}
	var root yamlv3.Node
	if err := yamlv3.Unmarshal(doc, &root); err != nil {
		line, msg := yamlErrorLine(err)
		p := at(line, 0)
		return false, &DecodeError{Document: n, Line: p.line, Offset: -1, Fatal: true, Err: fmt.Errorf("invalid YAML: %s", msg)}
	}
	if root.Kind == 0 || len(root.Content) == 0 || root.Content[0].Kind == yamlv3.ScalarNode && root.Content[0].Tag == "!!null" {
		return true, nil
	}
	c := yamlChecker{sizes: map[*yamlv3.Node]yamlSize{}, at: at}
	if p, err := c.check(root.Content[0], 1, ""); err != nil {
		pos := at(p.line, p.column)
		return false, &DecodeError{Document: n, Line: pos.line, Column: pos.column, Offset: -1, Fatal: c.fatal, Err: err}
	}
	return false, nil
}

// yamlErrorRE matches the location go-yaml puts in its error messages:
// "yaml: line 3: ...", or one line of "yaml: unmarshal errors:\n  line 6:
// ...".
var yamlErrorRE = regexp.MustCompile(`(?m)^(?:yaml: |\s+)line (\d+): (.*)$`)

// yamlErrorLine splits a go-yaml error into its line (relative to the
// document, 0 if it names none) and its message, on one line and without
// the "yaml: " prefix. go-yaml's errors carry no structured position.
func yamlErrorLine(err error) (int, string) {
	msg := err.Error()
	if m := yamlErrorRE.FindStringSubmatch(msg); m != nil {
		if line, err := strconv.Atoi(m[1]); err == nil {
			return line, m[2]
		}
	}
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	return 0, strings.Join(strings.Fields(msg), " ")
}

// yamlPosition turns a position go-yaml reports in doc (1-based line,
// column in characters; 0 for unknown) into the input's: lines end with
// '\n' only, columns count bytes. go-yaml also breaks lines at a lone '\r'
// and at U+0085, U+2028 and U+2029.
func yamlPosition(doc []byte, line, column int) (int, int) {
	// Find where go-yaml's line starts.
	start, l := 0, 1
	for i := 0; i < len(doc) && l < line; {
		size := 0
		switch {
		case doc[i] == '\r' && i+1 < len(doc) && doc[i+1] == '\n':
			size = 2
		case doc[i] == '\r' || doc[i] == '\n':
			size = 1
		case bytes.HasPrefix(doc[i:], []byte("\u0085")):
			size = 2
		case bytes.HasPrefix(doc[i:], []byte("\u2028")), bytes.HasPrefix(doc[i:], []byte("\u2029")):
			size = 3
		}
		if size == 0 {
			i++
			continue
		}
		i += size
		start, l = i, l+1
	}
	off := start
	if column > 0 {
		for n := 1; n < column && off < len(doc) && doc[off] != '\n'; n++ {
			_, size := utf8.DecodeRune(doc[off:])
			off += size
		}
	}
	inputLine := 1 + bytes.Count(doc[:off], []byte{'\n'})
	if column <= 0 {
		return inputLine, 0
	}
	return inputLine, off - bytes.LastIndexByte(doc[:off], '\n')
}

// blankYAML reports whether a YAML document holds only blank lines and
// comments.
func blankYAML(b []byte) bool {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		line = bytes.TrimLeft(line, " \t\r")
		if len(line) > 0 && line[0] != '#' {
			return false
		}
	}
	return true
}

// estimateYAMLValues bounds, cheaply and from above for acmeq's
// resources, how many nodes parsing b creates: one per line, per flow
// collection and separator, and per "- " or ": " indicator. It keeps a
// hostile document from costing the YAML parser hundreds of megabytes.
func estimateYAMLValues(b []byte) int {
	n := 1
	for i, c := range b {
		switch c {
		case '\n', ',', '[', '{':
			n++
		case '-', ':':
			if i+1 < len(b) && (b[i+1] == ' ' || b[i+1] == '\n') {
				n++
			}
		}
	}
	return n
}

// yamlSize is the size of a YAML subtree once its aliases are expanded.
type yamlSize struct{ values, depth int }

// yamlChecker walks a YAML document for what encoding it as JSON would hide
// or blow up: keys given twice, nesting over MaxDocumentDepth, and more
// than MaxDocumentValues values once aliases are expanded.
type yamlChecker struct {
	values int
	sizes  map[*yamlv3.Node]yamlSize       // memo of aliased subtrees
	fatal  bool                            // the error is a limit, not a key given twice
	at     func(line, column int) position // a node's place in the input
}

// nodePos is a position relative to the YAML document.
type nodePos struct{ line, column int }

// check walks n, at nesting depth, under path. It returns the first
// problem and where it is.
func (c *yamlChecker) check(n *yamlv3.Node, depth int, path string) (nodePos, error) {
	here := nodePos{n.Line, n.Column}
	if n.Kind == yamlv3.AliasNode {
		s := c.size(n.Alias)
		c.values += s.values
		if depth+s.depth-1 > MaxDocumentDepth {
			c.fatal = true
			return here, fmt.Errorf("nested deeper than %d levels (with its aliases expanded), the limit for one document", MaxDocumentDepth)
		}
	} else {
		c.values++
	}
	if c.values > MaxDocumentValues {
		c.fatal = true
		return here, fmt.Errorf("more than %d values (with its aliases expanded), the limit for one document", MaxDocumentValues)
	}
	if (n.Kind == yamlv3.MappingNode || n.Kind == yamlv3.SequenceNode) && depth > MaxDocumentDepth {
		c.fatal = true
		return here, fmt.Errorf("nested deeper than %d levels, the limit for one document", MaxDocumentDepth)
	}
	switch n.Kind {
	case yamlv3.MappingNode:
		seen := map[string]*yamlv3.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := path + "[?]"
			if k.Kind == yamlv3.ScalarNode {
				p = joinPath(path, k.Value)
				if first, dup := seen[k.Value]; dup {
					return nodePos{k.Line, k.Column}, fmt.Errorf("%s: duplicate key (first at line %d, column %d)", p, c.at(first.Line, first.Column).line, c.at(first.Line, first.Column).column)
				}
				seen[k.Value] = k
			}
			if at, err := c.check(k, depth+1, p); err != nil {
				return at, err
			}
			if at, err := c.check(v, depth+1, p); err != nil {
				return at, err
			}
		}
	case yamlv3.SequenceNode:
		for i, e := range n.Content {
			if at, err := c.check(e, depth+1, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return at, err
			}
		}
	}
	return here, nil
}

// size measures the subtree n with aliases expanded, memoised so that a
// chain of aliases costs its length, not its expansion.
func (c *yamlChecker) size(n *yamlv3.Node) yamlSize {
	if n == nil {
		return yamlSize{}
	}
	if s, ok := c.sizes[n]; ok {
		return s
	}
	var s yamlSize
	switch n.Kind {
	case yamlv3.AliasNode:
		s = c.size(n.Alias)
	case yamlv3.MappingNode, yamlv3.SequenceNode, yamlv3.DocumentNode:
		s.values = 1
		for _, e := range n.Content {
			cs := c.size(e)
			s.values += cs.values
			s.depth = max(s.depth, cs.depth)
		}
		s.depth++
		s.values = min(s.values, MaxDocumentValues+1) // no overflow
	default:
		s = yamlSize{values: 1}
	}
	c.sizes[n] = s
	return s
}

// isDocumentSeparator reports whether a YAML line starts a new document
// ("---") or ends one ("..."), optionally followed by a comment.
func isDocumentSeparator(line []byte) bool {
	for _, marker := range []string{"---", "..."} {
		rest, ok := bytes.CutPrefix(line, []byte(marker))
		if !ok {
			continue
		}
		rest = bytes.TrimSpace(rest)
		if len(rest) == 0 || rest[0] == '#' {
			return true
		}
	}
	return false
}
