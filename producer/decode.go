package producer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/acmeq/acmeq/messages"
)

// CertManagerAPIVersion is cert-manager's apiVersion, accepted besides
// messages.APIVersion so users can paste their cert-manager manifests.
const CertManagerAPIVersion = "cert-manager.io/v1"

// Limits of one document of the input. A document over a limit stops the
// input with an error naming the limit: the decoder's memory stays bounded
// whatever it is fed.
const (
	// MaxDocumentSize is the largest document, in bytes: one YAML document,
	// one JSON object, or one element of a JSON array. A resource is at most
	// MaxResourceSize as JSON; this leaves room for YAML's indentation and
	// comments.
	MaxDocumentSize = 2 << 20
	// MaxDocumentDepth is the deepest nesting of objects and lists in a
	// document. acmeq's deepest field,
	// spec.acme.solvers[].dns01.rfc2136.tsigSecretSecretRef.name, is 8 deep.
	MaxDocumentDepth = 32
	// MaxDocumentValues is the most values (objects, lists and scalars;
	// YAML aliases counted as expanded) one document may hold.
	MaxDocumentValues = 100_000
)

// maxDecodeErrors bounds how many document errors Decode collects.
const maxDecodeErrors = 20

// ErrNoObjects is returned by Decode and Decoder.Next for an input that
// holds no resource at all (empty, blank, comments only, an empty JSON
// array). It is worded as kubectl words it.
var ErrNoObjects = errors.New("no objects passed to apply")

// DecodeError is a problem with one document of the input.
//
// Its message starts with the document's 1-based index, its kind once
// known, and where the problem is when that is known:
//
//	document 2, line 7, column 31: invalid JSON: unexpected end of input: the document, which starts at line 5, is cut short
//	document 3 (Certificate): spec.duration: unknown field
type DecodeError struct {
	// Document is the 1-based index of the document.
	Document int
	// Kind is the document's kind, once known.
	Kind messages.Kind
	// Line and Column locate the problem in the input (1-based; Column
	// counts bytes). Both are 0 for a problem with a field's value, which
	// the field's path in Err locates instead.
	Line, Column int
	// Offset is the byte offset of the problem in the input, or -1 when
	// it is not known (field errors, and positions go-yaml reports).
	Offset int64
	// Fatal is true when the input cannot be read any further: a read
	// error, a syntax error, or a limit crossed. Next returns io.EOF after
	// it. After any other DecodeError, Next goes on with the next document.
	Fatal bool
	// Err is the problem.
	Err error
}

// Error implements error.
func (e *DecodeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "document %d", e.Document)
	if e.Kind != "" {
		fmt.Fprintf(&b, " (%s)", e.Kind)
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, ", line %d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ", column %d", e.Column)
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns Err.
func (e *DecodeError) Unwrap() error { return e.Err }

// Decode reads every resource of r (see Decoder for the formats). It
// reports the problems of all documents at once (up to 20), joined with
// errors.Join, and returns no objects if there is any. An input without
// any resource is ErrNoObjects.
func Decode(r io.Reader) ([]messages.Object, error) {
	d := NewDecoder(r)
	var objs []messages.Object
	var errs []error
	for {
		obj, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, err)
			if len(errs) == maxDecodeErrors {
				errs = append(errs, fmt.Errorf("producer: more than %d documents are invalid, stopped reading", maxDecodeErrors))
				break
			}
			continue
		}
		objs = append(objs, obj)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return objs, nil
}

type decodeMode int

const (
	modeUnknown   decodeMode = iota
	modeYAML                 // documents separated by "---" lines
	modeJSON                 // a JSON object, or one per line (JSON Lines)
	modeJSONArray            // a JSON array of objects
)

// Where a JSON array's reader stands.
type arrayState int

const (
	arrayOpened    arrayState = iota // after '[': an element or ']'
	arrayAfterElem                   // after an element: ',' or ']'
	arrayAfterSep                    // after ',': an element
	arrayClosed                      // after ']': only white space
)

// position is a place in the input.
type position struct {
	offset       int64 // bytes before it
	line, column int   // 1-based; columns count bytes
}

// Decoder reads Issuers and Certificates one at a time, so a file of
// 100,000 lines is never held in memory at once: it holds one document (at
// most MaxDocumentSize bytes) at a time. The format is chosen by the first
// character of the input:
//
//   - '[': a JSON array of objects;
//   - '{': a JSON object, or a sequence of them such as JSON Lines (one
//     object per line);
//   - anything else: YAML, possibly several documents separated by lines
//     "---". Empty documents are skipped.
//
// Each document needs apiVersion acmeq.io/v1 (or cert-manager.io/v1) and
// kind Issuer, ClusterIssuer or Certificate (case-insensitive, plurals and
// "cert" accepted). Field names are matched exactly, as Kubernetes does: unknown
// fields and a key given twice in one object are errors. Errors are
// *DecodeError values and start with the 1-based index of the document:
// `document 3: apiVersion: "v2" is not supported (want acmeq.io/v1)`.
//
// Reading always ends: a read error, a syntax error, a document cut short,
// or one over MaxDocumentSize, MaxDocumentDepth or MaxDocumentValues stops
// the input with one fatal error, after which Next returns io.EOF. Values
// repeated in errors are cut to 64 characters.
type Decoder struct {
	src   io.Reader
	br    *bufio.Reader
	mode  decodeMode
	pos   position // of the next byte to read
	doc   int      // documents started so far (including invalid ones)
	done  bool     // Next returns io.EOF from now on
	array arrayState

	// YAML
	yamlEOF bool   // the input is exhausted
	indent  []byte // white space sniff consumed on the first line

	buf   []byte   // the current document
	start position // where it starts
	peak  int      // the largest len(buf) so far, for tests
}

// NewDecoder returns a Decoder reading from r.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{src: r, pos: position{line: 1, column: 1}}
}

// Next returns the next resource, already typed (*messages.Issuer, which
// also holds a ClusterIssuer, or *messages.Certificate, with apiVersion
// acmeq.io/v1 and the canonical kind), or io.EOF after the last. An input without any resource returns
// ErrNoObjects once, then io.EOF.
//
// Errors are *DecodeError. After one whose Fatal is false (a document with
// a bad field, kind or apiVersion, or a key given twice) Next can be called
// again to continue with the next document; after a fatal one (a read or
// syntax error, a limit crossed) Next returns io.EOF.
func (d *Decoder) Next() (messages.Object, error) {
	if d.done {
		return nil, io.EOF
	}
	if d.mode == modeUnknown {
		if err := d.sniff(); err != nil {
			if errors.Is(err, io.EOF) {
				return d.end()
			}
			return nil, err
		}
	}
	if d.mode == modeYAML {
		return d.nextYAML()
	}
	return d.nextJSON()
}

// end finishes the input: ErrNoObjects if it held no document, else io.EOF.
func (d *Decoder) end() (messages.Object, error) {
	d.done = true
	if d.doc == 0 {
		return nil, ErrNoObjects
	}
	return nil, io.EOF
}

// fatal stops the input with an error at p about document doc.
func (d *Decoder) fatal(doc int, p position, err error) *DecodeError {
	d.done = true
	return &DecodeError{Document: doc, Line: p.line, Column: p.column, Offset: p.offset, Fatal: true, Err: err}
}

// readErr is the fatal error for a failed read at the current position.
func (d *Decoder) readErr(doc int, err error) *DecodeError {
	return d.fatal(doc, d.pos, fmt.Errorf("cannot read the input: %w", err))
}

// advance moves pos past b.
func (d *Decoder) advance(b byte) {
	d.pos.offset++
	if b == '\n' {
		d.pos.line++
		d.pos.column = 1
	} else {
		d.pos.column++
	}
}

// sniff picks the format from the first non-blank character.
func (d *Decoder) sniff() error {
	d.br = bufio.NewReaderSize(d.src, 64<<10)
	if bom, _ := d.br.Peek(3); bytes.Equal(bom, []byte("\xef\xbb\xbf")) {
		_, _ = d.br.Discard(3)
		d.pos.offset += 3
	}
	// Skip blank space, keeping the indentation of the first non-blank line
	// so that YAML sees it unchanged.
	var indent []byte
	for {
		b, err := d.br.ReadByte()
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		if err != nil {
			return d.readErr(1, err)
		}
		switch b {
		case ' ', '\t', '\r':
			if len(indent) >= MaxDocumentSize {
				return d.fatal(1, d.pos, fmt.Errorf("larger than %s, the limit for one document", sizeString(MaxDocumentSize)))
			}
			indent = append(indent, b)
			d.advance(b)
			continue
		case '\n':
			indent = indent[:0]
			d.advance(b)
			continue
		}
		_ = d.br.UnreadByte()
		switch b {
		case '[':
			d.mode = modeJSONArray
			d.advance(b)
			_, _ = d.br.ReadByte()
		case '{':
			d.mode = modeJSON
		default:
			d.mode = modeYAML
			d.indent = indent
		}
		return nil
	}
}

// skipSpace consumes JSON white space and returns the next byte, unread.
func (d *Decoder) skipSpace() (byte, error) {
	for {
		b, err := d.br.ReadByte()
		if err != nil {
			return 0, err
		}
		switch b {
		case ' ', '\t', '\r', '\n':
			d.advance(b)
			continue
		}
		_ = d.br.UnreadByte()
		return b, nil
	}
}

// consume reads the byte skipSpace returned.
func (d *Decoder) consume() {
	b, _ := d.br.ReadByte()
	d.advance(b)
}

func (d *Decoder) nextJSON() (messages.Object, error) {
	if d.mode == modeJSONArray {
		if err := d.toArrayElement(); err != nil {
			return nil, err
		}
	}
	b, err := d.skipSpace()
	if err != nil {
		return nil, d.valueMissing(err)
	}
	if d.mode == modeJSONArray {
		if b == ']' && d.array == arrayOpened {
			d.consume()
			d.array = arrayClosed
			return d.nextJSON()
		}
		d.array = arrayAfterElem
	}
	switch b {
	case '}', ']', ',', ':':
		what := "a value"
		if d.mode == modeJSONArray {
			what = "an array element"
		}
		return nil, d.fatal(d.doc+1, d.pos, fmt.Errorf("invalid JSON: want %s, got %s", what, quoteByte(b)))
	}
	d.doc++
	d.start = d.pos
	raw, derr := d.scanJSON()
	if derr != nil {
		return nil, derr
	}
	return d.decodeJSON(raw, d.start)
}

// toArrayElement reads a JSON array's separators up to where an element or
// its ']' may start. At the end of the input after the array it returns
// what end returns (ErrNoObjects or io.EOF); any other error is fatal.
func (d *Decoder) toArrayElement() error {
	for d.array != arrayOpened && d.array != arrayAfterSep {
		b, err := d.skipSpace()
		switch {
		case errors.Is(err, io.EOF) && d.array == arrayClosed:
			_, err := d.end()
			return err
		case errors.Is(err, io.EOF):
			return d.fatal(d.doc, d.pos, errors.New("invalid JSON: unexpected end of input: the array is not closed with ']'"))
		case err != nil:
			return d.readErr(d.doc, err)
		case d.array == arrayClosed:
			return d.fatal(d.doc+1, d.pos, errors.New("invalid JSON: unexpected data after the array"))
		case b == ',':
			d.consume()
			d.array = arrayAfterSep
		case b == ']':
			d.consume()
			d.array = arrayClosed
		default:
			return d.fatal(d.doc, d.pos, fmt.Errorf("invalid JSON: want ',' or ']' after an array element, got %s", quoteByte(b)))
		}
	}
	return nil
}

// valueMissing is the error for err, skipSpace's failure where a JSON
// value may start: the end of the input (what end returns) after JSON
// objects, else a fatal error.
func (d *Decoder) valueMissing(err error) error {
	switch {
	case errors.Is(err, io.EOF) && d.mode == modeJSON:
		_, err := d.end()
		return err
	case errors.Is(err, io.EOF) && d.array == arrayAfterSep:
		return d.fatal(d.doc+1, d.pos, errors.New("invalid JSON: unexpected end of input: a value is missing after ','"))
	case errors.Is(err, io.EOF):
		return d.fatal(d.doc+1, d.pos, errors.New("invalid JSON: unexpected end of input: the array is not closed with ']'"))
	}
	return d.readErr(d.doc+1, err)
}

// scanJSON reads the JSON value that starts at the next byte into d.buf. It
// checks only the structure (brackets, strings) and the limits; the JSON
// parser checks the rest. Every structural error is fatal: where the value
// ends cannot be known. It works on the reader's buffer a chunk at a time.
func (d *Decoder) scanJSON() ([]byte, *DecodeError) {
	d.buf = d.buf[:0]
	s := jsonScan{values: 1}
	for {
		chunk, err := d.peek()
		if len(chunk) == 0 {
			switch {
			case !errors.Is(err, io.EOF):
				return nil, d.readErr(d.doc, err)
			case s.literal:
				return d.buf, nil
			case s.inString:
				return nil, d.fatal(d.doc, d.pos, fmt.Errorf("invalid JSON: unexpected end of input: the document, which starts at line %d, is cut short inside a string", d.start.line))
			}
			return nil, d.fatal(d.doc, d.pos, fmt.Errorf("invalid JSON: unexpected end of input: the document, which starts at line %d, is cut short", d.start.line))
		}
		n, end, problem := s.feed(chunk)
		if problem != nil {
			d.skip(chunk[:n])
			return nil, d.fatal(d.doc, d.pos, problem)
		}
		if room := MaxDocumentSize - len(d.buf); n > room {
			d.skip(chunk[:room])
			return nil, d.fatal(d.doc, d.pos, fmt.Errorf("larger than %s, the limit for one document", sizeString(MaxDocumentSize)))
		}
		d.buf = append(d.buf, chunk[:n]...)
		d.peak = max(d.peak, len(d.buf))
		d.skip(chunk[:n])
		if end {
			return d.buf, nil
		}
	}
}

// peek returns the bytes buffered in the reader, reading more if there are
// none. They are valid until the next read.
func (d *Decoder) peek() ([]byte, error) {
	if _, err := d.br.Peek(1); err != nil {
		return nil, err
	}
	return d.br.Peek(d.br.Buffered())
}

// skip consumes b, the start of what peek returned, and moves pos past it.
func (d *Decoder) skip(b []byte) {
	_, _ = d.br.Discard(len(b))
	d.pos.offset += int64(len(b))
	if nl := bytes.Count(b, []byte{'\n'}); nl > 0 {
		d.pos.line += nl
		d.pos.column = len(b) - bytes.LastIndexByte(b, '\n')
	} else {
		d.pos.column += len(b)
	}
}

// jsonScan is the state of scanJSON between chunks.
type jsonScan struct {
	started  bool
	literal  bool   // a top-level number, true, false, null (or garbage)
	inString bool   // inside a string
	escaped  bool   // after a backslash in a string
	stack    []byte // open brackets
	opened   bool   // just after an opening bracket
	// values counts exactly: the root, plus one per element of each
	// container: its first (if any) and one per ','.
	values int
}

// feed scans b. It returns how many bytes of b belong to the value,
// whether the value ends there, or a problem with byte n.
func (s *jsonScan) feed(b []byte) (n int, end bool, problem error) {
	for i, c := range b {
		switch {
		case !s.started:
			s.start(c)
			continue
		case s.literal:
			if endsLiteral(c) {
				return i, true, nil
			}
			continue
		case s.inString:
			end, problem = s.stringByte(c)
		default:
			end, problem = s.structureByte(c)
		}
		if problem != nil {
			return i, false, problem
		}
		if end {
			return i + 1, true, nil
		}
	}
	return len(b), false, nil
}

// start scans c, the first byte of the value.
func (s *jsonScan) start(c byte) {
	s.started = true
	switch c {
	case '"':
		s.inString = true
	case '{', '[':
		s.stack = append(s.stack, c)
		s.opened = true
	default:
		s.literal = true
	}
}

// endsLiteral reports whether c ends a top-level literal; c is not part of
// it.
func endsLiteral(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', ',', ':', '[', ']', '{', '}', '"':
		return true
	}
	return false
}

// stringByte scans c inside a string. The value ends with c when c closes
// a top-level string.
func (s *jsonScan) stringByte(c byte) (end bool, problem error) {
	switch {
	case s.escaped:
		s.escaped = false
	case c == '\\':
		s.escaped = true
	case c == '"':
		s.inString = false
		return len(s.stack) == 0, nil
	case c == '\n':
		// JSON strings never hold a raw newline: the line was cut.
		return false, errors.New("invalid JSON: the line ends inside a string")
	}
	return false, nil
}

// structureByte scans c outside strings, inside a container. The value ends
// with c when c closes the outermost container.
func (s *jsonScan) structureByte(c byte) (end bool, problem error) {
	switch c {
	case ' ', '\t', '\r', '\n':
		return false, nil
	}
	if s.opened && c != '}' && c != ']' {
		s.values++ // the first element
	}
	s.opened = false
	switch c {
	case '"':
		s.inString = true
	case '{', '[':
		if len(s.stack) == MaxDocumentDepth {
			return false, fmt.Errorf("nested deeper than %d levels, the limit for one document", MaxDocumentDepth)
		}
		s.stack = append(s.stack, c)
		s.opened = true
	case '}', ']':
		open := s.stack[len(s.stack)-1]
		if open == '{' && c != '}' || open == '[' && c != ']' {
			return false, fmt.Errorf("invalid JSON: %s does not close %s", quoteByte(c), quoteByte(open))
		}
		s.stack = s.stack[:len(s.stack)-1]
		if len(s.stack) == 0 {
			return true, nil
		}
	case ',':
		s.values++
	}
	if s.values > MaxDocumentValues {
		return false, fmt.Errorf("more than %d values, the limit for one document", MaxDocumentValues)
	}
	return false, nil
}

// decodeJSON decodes document d.doc, raw, which starts at start.
func (d *Decoder) decodeJSON(raw []byte, start position) (messages.Object, error) {
	obj, derr := decodeDocument(d.doc, raw, func(off int64) position { return positionIn(raw, start, off) })
	if derr != nil {
		if derr.Fatal {
			d.done = true
		}
		return nil, derr
	}
	return obj, nil
}

// positionIn is the position of byte off of raw, which starts at start.
func positionIn(raw []byte, start position, off int64) position {
	off = min(max(off, 0), int64(len(raw)))
	before := raw[:off]
	p := position{offset: start.offset + off, line: start.line, column: start.column + int(off)}
	if n := bytes.Count(before, []byte{'\n'}); n > 0 {
		p.line += n
		p.column = int(off) - bytes.LastIndexByte(before, '\n')
	}
	return p
}

// decodeDocument turns document n (JSON) into a typed resource. pos maps an
// offset in raw to a place in the input, or is nil when raw was converted
// from YAML.
func decodeDocument(n int, raw []byte, pos func(int64) position) (messages.Object, *DecodeError) {
	kind, derr := documentKind(n, raw, pos)
	if derr != nil {
		return nil, derr
	}
	var obj messages.Object
	var tm *messages.TypeMeta
	switch kind {
	case messages.KindIssuer, messages.KindClusterIssuer:
		o := messages.NewIssuer(kind)
		obj, tm = o, &o.TypeMeta
	default:
		o := new(messages.Certificate)
		obj, tm = o, &o.TypeMeta
	}
	w := fieldChecker{raw: raw, pos: pos, dupAt: -1}
	if err := w.check(reflect.TypeOf(obj)); err != nil {
		if w.dupAt >= 0 || w.fatal {
			// Like YAML's, a key given twice is a problem of the text,
			// located by line when the text is at hand.
			e := documentError(n, "", err)
			e.Fatal = w.fatal
			if pos != nil && w.dupAt >= 0 {
				p := pos(w.dupAt)
				e.Line, e.Column, e.Offset = p.line, p.column, p.offset
			}
			return nil, e
		}
		return nil, documentError(n, kind, err)
	}
	// Every key names a field exactly (checked above), so plain Unmarshal
	// decodes what the check saw.
	if err := json.Unmarshal(raw, obj); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" && te.Type != nil {
			return nil, documentError(n, kind, fmt.Errorf("%s: got a JSON %s, want %s", te.Field, te.Value, describeType(te.Type)))
		}
		return nil, documentError(n, kind, errors.New(strings.TrimPrefix(err.Error(), "json: ")))
	}
	tm.APIVersion, tm.Kind = messages.APIVersion, kind
	return obj, nil
}

// documentError is a problem with document n, of kind when known, that no
// position in the input locates.
func documentError(n int, kind messages.Kind, err error) *DecodeError {
	return &DecodeError{Document: n, Kind: kind, Offset: -1, Err: err}
}

// documentKind checks that document n (JSON, see decodeDocument) is an
// object with a supported apiVersion and a kind one can apply, and returns
// the kind.
func documentKind(n int, raw []byte, pos func(int64) position) (messages.Kind, *DecodeError) {
	var probe struct {
		APIVersion any `json:"apiVersion"`
		Kind       any `json:"kind"`
	}
	err := json.Unmarshal(raw, &probe)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		// The value's brackets balance but its content is not JSON.
		e := documentError(n, "", fmt.Errorf("invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: ")))
		e.Fatal = true
		if pos != nil {
			p := pos(se.Offset - 1)
			e.Line, e.Column, e.Offset = p.line, p.column, p.offset
		}
		return "", e
	}
	if raw[0] != '{' {
		return "", documentError(n, "", fmt.Errorf("want an object with apiVersion and kind, got %s", jsonType(raw)))
	}
	if err != nil {
		return "", documentError(n, "", errors.New(strings.TrimPrefix(err.Error(), "json: ")))
	}
	if err := checkAPIVersion(probe.APIVersion); err != nil {
		return "", documentError(n, "", err)
	}
	kind, err := applicableKind(probe.Kind)
	if err != nil {
		return "", documentError(n, "", err)
	}
	return kind, nil
}

// checkAPIVersion checks a document's apiVersion, v as JSON decodes it.
func checkAPIVersion(v any) error {
	switch v := v.(type) {
	case nil:
		return fmt.Errorf("apiVersion: required (want %s)", messages.APIVersion)
	case string:
		if v != messages.APIVersion && v != CertManagerAPIVersion {
			return fmt.Errorf("apiVersion: %s is not supported (want %s)", quote(v), messages.APIVersion)
		}
		return nil
	default:
		return fmt.Errorf("apiVersion: must be a string (want %s)", messages.APIVersion)
	}
}

// applicableKind parses a document's kind, v as JSON decodes it: Issuer,
// ClusterIssuer or Certificate.
func applicableKind(v any) (messages.Kind, error) {
	kindName, ok := v.(string)
	switch {
	case v == nil:
		return "", errors.New("kind: required (want Issuer, ClusterIssuer or Certificate)")
	case !ok:
		return "", errors.New("kind: must be a string (want Issuer, ClusterIssuer or Certificate)")
	}
	kind, err := messages.ParseKind(kindName)
	switch {
	case err != nil || kind == messages.KindSecret:
		return "", fmt.Errorf("kind: %s is not supported (want Issuer, ClusterIssuer or Certificate)", quote(kindName))
	case kind == messages.KindCertificateRequest || kind == messages.KindOrder || kind == messages.KindChallenge:
		return "", fmt.Errorf("kind: %s cannot be applied: orders, challenges and certificaterequests are created by workers (want Issuer, ClusterIssuer or Certificate)", kind)
	}
	return kind, nil
}

func jsonType(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}
