package view

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/acmeq/acmeq/messages"
)

// Omitted replaces values describe does not print: PEM blocks (the CSR of
// a CertificateRequest or Order, an Issuer's CA bundle) and secrets (an
// RFC 2136 TSIG secret), as in the reference's "Request: [...]".
const Omitted = "[...]"

// describeSkip are the fields printed at the top (or not at all), as in
// kubectl's generic describer.
var describeSkip = []string{".metadata.name", ".metadata.namespace", ".metadata.labels", ".metadata.annotations", ".metadata.managedFields"}

// secretFields are never printed (Issuers once held an RFC 2136 TSIG
// secret inline; it is now a reference to a Secret).
var secretFields = []string{"tsigSecret"}

// prefixWriter is kubectl describe's PrefixWriter: two spaces of indent
// per level, into a tabwriter that aligns the "Key:\tvalue" cells.
type prefixWriter struct{ w *tabwriter.Writer }

func (p prefixWriter) write(level int, format string, a ...any) {
	fmt.Fprintf(p.w, strings.Repeat("  ", level)+format, a...)
}

// Describe renders obj and its events as `kubectl describe` renders a
// cert-manager resource (kubectl's generic describer for custom
// resources):
//
//	Name:         NAME
//	Namespace:    NAMESPACE
//	Labels:       <none>
//	Annotations:  <none>
//	API Version:  acmeq.io/v1
//	Kind:         Order
//	Metadata:
//	  Creation Timestamp:  ...
//	Spec:
//	  ...
//	Status:
//	  ...
//	Events:
//	  Type    Reason   Age   From   Message
//	  ----    ------   ----  ----   -------
//	  Normal  Created  72s   acmeq  Created Challenge resource ...
//
// Fields are sorted by their JSON name and labelled by Label; nested
// objects are indented two spaces per level; lists of scalars print one
// item per line; the items of a list of objects print one after another,
// each one level deeper than the list's key. "Key:\tvalue" lines are
// aligned by kubectl's tabwriter (2 spaces of padding), so consecutive
// lines share a value column whatever their depth, as in kubectl.
// Every name, label, value, reason and message is escaped (Escape), so
// none can add a line. Timestamps are shown in RFC 3339 to the second; CSRs, CA bundles and
// secrets are shown as "[...]". Events are aggregated (AggregateEvents)
// and ordered by first occurrence; their Age is "19s", or "101s (x3 over
// 106s)" for repeats.
func Describe(obj messages.Object, events []messages.Event, now time.Time, sections ...Section) string {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 8, 2, ' ', 0)
	w := prefixWriter{tw}
	m := obj.GetMeta()
	w.write(0, "Name:\t%s\n", Escape(m.Name))
	w.write(0, "Namespace:\t%s\n", Escape(m.Namespace))
	printLabels(w, "Labels", m.Labels)
	printLabels(w, "Annotations", nil)
	content, err := toContent(obj)
	if err != nil {
		w.write(0, "Error:\t%v\n", err)
	} else {
		printContent(w, 0, content, "", describeSkip)
	}
	for _, sec := range sections {
		describeSection(w, sec)
	}
	describeEvents(w, AggregateEvents(events), now)
	_ = tw.Flush()
	return buf.String()
}

// Section is a table describe shows before the events, as kubectl shows
// what is not in the resource itself (an Issuer's rate-limit budgets,
// which live in Redis).
type Section struct {
	// Title is the section's name ("Rate Limits").
	Title string
	// Header names the columns; Rows are escaped when printed.
	Header []string
	Rows   [][]string
	// Empty is printed instead of the table when there are no rows
	// ("<none>", or why the section is unavailable).
	Empty string
}

func describeSection(w prefixWriter, sec Section) {
	if len(sec.Rows) == 0 {
		w.write(0, "%s:\t%s\n", sec.Title, Escape(sec.Empty))
		return
	}
	_ = w.w.Flush()
	w.write(0, "%s:\n  %s\n", sec.Title, strings.Join(sec.Header, "\t"))
	dashes := make([]string, len(sec.Header))
	for i, h := range sec.Header {
		dashes[i] = strings.Repeat("-", len(h))
	}
	w.write(1, "%s\n", strings.Join(dashes, "\t"))
	for _, r := range sec.Rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = Escape(c)
		}
		w.write(1, "%s\n", strings.Join(cells, "\t"))
	}
}

// printLabels is kubectl's printLabelsMultiline.
func printLabels(w prefixWriter, title string, labels map[string]string) {
	w.write(0, "%s:\t", title)
	if len(labels) == 0 {
		w.write(0, "<none>\n")
		return
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			w.write(0, "\t")
		}
		w.write(0, "%s=%s\n", Escape(k), Escape(labels[k]))
	}
}

// toContent is obj as JSON objects (numbers kept exact), with timestamps
// shortened and what describe must not print replaced by Omitted.
func toContent(obj messages.Object) (map[string]any, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var content map[string]any
	if err := dec.Decode(&content); err != nil {
		return nil, err
	}
	return sanitize(content).(map[string]any), nil
}

func sanitize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			if s, ok := c.(string); ok && slices.Contains(secretFields, k) && s != "" {
				t[k] = Omitted
				continue
			}
			t[k] = sanitize(c)
		}
		return t
	case []any:
		for i, c := range t {
			t[i] = sanitize(c)
		}
		return t
	case string:
		if strings.Contains(t, "-----BEGIN ") {
			return Omitted
		}
		if ts, err := time.Parse(time.RFC3339Nano, t); err == nil {
			return ts.UTC().Format(time.RFC3339)
		}
		return t
	}
	return v
}

// printContent is kubectl's printUnstructuredContent.
func printContent(w prefixWriter, level int, content map[string]any, skipPrefix string, skip []string) {
	fields := make([]string, 0, len(content))
	for f := range content {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	for _, f := range fields {
		path := skipPrefix + "." + f
		if slices.Contains(skip, path) {
			continue
		}
		label := Escape(Label(f))
		switch v := content[f].(type) {
		case map[string]any:
			w.write(level, "%s:\n", label)
			printContent(w, level+1, v, path, skip)
		case []any:
			w.write(level, "%s:\n", label)
			for _, item := range v {
				if m, ok := item.(map[string]any); ok {
					printContent(w, level+1, m, path, skip)
				} else {
					w.write(level+1, "%s\n", Escape(fmt.Sprint(item)))
				}
			}
		default:
			w.write(level, "%s:\t%s\n", label, Escape(fmt.Sprint(v)))
		}
	}
}

// describeEvents is kubectl's DescribeEvents.
func describeEvents(w prefixWriter, evs []messages.Event, now time.Time) {
	if len(evs) == 0 {
		w.write(0, "Events:\t<none>\n")
		return
	}
	_ = w.w.Flush()
	w.write(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n")
	w.write(1, "----\t------\t----\t----\t-------\n")
	for _, e := range evs {
		w.write(1, "%s\t%s\t%s\t%s\t%s\n", Escape(string(e.Type)), Escape(e.Reason), EventAge(e, now), Escape(EventSource(e)), Escape(strings.TrimSpace(e.Message)))
	}
}
