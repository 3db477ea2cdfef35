package view

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/acmeq/acmeq/messages"
)

// kubectl's printers write tables through a tabwriter with a minimum cell
// width of 6, a tab width of 4 and a padding of 3 spaces
// (k8s.io/cli-runtime printers.GetNewTabWriter); the last column is not
// padded.
const (
	tableMinWidth = 6
	tableTabWidth = 4
	tablePadding  = 3
)

// Aligner lays out rows of cells as kubectl's tables, through
// text/tabwriter: every column but the last is padded to its widest cell
// plus 3 spaces (at least 6 wide). Like kubectl's tabwriter with
// RememberWidths, it remembers the widths it used, so rows formatted
// later (get -w, events -f) line up with the rows before them; a wider
// cell widens its column from then on. Cells are escaped (Escape): a
// cell never spans two lines.
type Aligner struct {
	widths []int
}

// Format returns the rows, one line each.
func (a *Aligner) Format(rows [][]string) string {
	cols := 0
	escaped := make([][]string, len(rows))
	for r, row := range rows {
		cols = max(cols, len(row))
		escaped[r] = make([]string, len(row))
		for i := range row {
			escaped[r][i] = Escape(row[i])
			if i == len(row)-1 {
				continue // the last cell of a line is not aligned
			}
			for len(a.widths) <= i {
				a.widths = append(a.widths, 0)
			}
			a.widths[i] = max(a.widths[i], utf8.RuneCountInString(escaped[r][i]))
		}
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, tableMinWidth, tableTabWidth, tablePadding, ' ', 0)
	// A first line of blank cells as wide as the widest cells seen so far
	// makes text/tabwriter remember the widths; it is cut off below.
	for i := 0; i < cols-1; i++ {
		fmt.Fprintf(tw, "%s\t", strings.Repeat(" ", a.widths[i]))
	}
	fmt.Fprintln(tw)
	for _, row := range escaped {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	_ = tw.Flush() // a strings.Builder does not fail
	out := b.String()
	return out[strings.IndexByte(out, '\n')+1:]
}

// column is one column of a kind's table; wide columns show with -o wide.
type column struct {
	name  string
	wide  bool
	value func(o messages.Object) string
}

func readyStatus(conds []messages.Condition) string {
	if c := messages.GetCondition(conds, messages.ConditionReady); c != nil {
		return string(c.Status)
	}
	return ""
}

func readyMessage(conds []messages.Condition) string {
	if c := messages.GetCondition(conds, messages.ConditionReady); c != nil {
		return c.Message
	}
	return ""
}

// issuerColumns are those of Issuers and ClusterIssuers (cert-manager
// prints both alike: NAME, READY, [STATUS,] AGE).
var issuerColumns = []column{
	{name: "READY", value: func(o messages.Object) string { return readyStatus(o.(*messages.Issuer).Status.Conditions) }},
	{name: "STATUS", wide: true, value: func(o messages.Object) string { return readyMessage(o.(*messages.Issuer).Status.Conditions) }},
}

// columns are cert-manager's printer columns for each kind (NAME and AGE
// are added around them).
var columns = map[messages.Kind][]column{
	messages.KindIssuer:        issuerColumns,
	messages.KindClusterIssuer: issuerColumns,
	messages.KindCertificate: {
		{name: "READY", value: func(o messages.Object) string { return readyStatus(o.(*messages.Certificate).Status.Conditions) }},
		{name: "SECRET", value: func(o messages.Object) string {
			c := o.(*messages.Certificate)
			if c.Spec.SecretName == "" {
				return c.Metadata.Name
			}
			return c.Spec.SecretName
		}},
		{name: "ISSUER", wide: true, value: func(o messages.Object) string { return o.(*messages.Certificate).Spec.IssuerRef.Name }},
		{name: "STATUS", wide: true, value: func(o messages.Object) string { return readyMessage(o.(*messages.Certificate).Status.Conditions) }},
	},
	messages.KindCertificateRequest: {
		{name: "READY", value: func(o messages.Object) string {
			return readyStatus(o.(*messages.CertificateRequest).Status.Conditions)
		}},
		{name: "ISSUER", value: func(o messages.Object) string { return o.(*messages.CertificateRequest).Spec.IssuerRef.Name }},
		{name: "STATUS", wide: true, value: func(o messages.Object) string {
			return readyMessage(o.(*messages.CertificateRequest).Status.Conditions)
		}},
	},
	messages.KindOrder: {
		{name: "STATE", value: func(o messages.Object) string { return string(o.(*messages.Order).Status.State) }},
		{name: "ISSUER", wide: true, value: func(o messages.Object) string { return o.(*messages.Order).Spec.IssuerRef.Name }},
		{name: "REASON", wide: true, value: func(o messages.Object) string { return o.(*messages.Order).Status.Reason }},
	},
	messages.KindChallenge: {
		{name: "STATE", value: func(o messages.Object) string { return string(o.(*messages.Challenge).Status.State) }},
		{name: "DOMAIN", value: func(o messages.Object) string { return o.(*messages.Challenge).Spec.DNSName }},
		{name: "REASON", value: func(o messages.Object) string { return o.(*messages.Challenge).Status.Reason }},
	},
	messages.KindSecret: secretColumns,
}

// Header returns the column names of kind's table.
func Header(kind messages.Kind, wide, allNamespaces bool) []string {
	var h []string
	if allNamespaces {
		h = append(h, "NAMESPACE")
	}
	h = append(h, "NAME")
	for _, c := range columns[kind] {
		if !c.wide || wide {
			h = append(h, c.name)
		}
	}
	return append(h, "AGE")
}

// Row returns the cells of obj's row; its kind picks the columns.
func Row(obj messages.Object, wide, allNamespaces bool, now time.Time) []string {
	m := obj.GetMeta()
	var r []string
	if allNamespaces {
		r = append(r, m.Namespace)
	}
	r = append(r, m.Name)
	for _, c := range columns[obj.GetKind()] {
		if !c.wide || wide {
			r = append(r, c.value(obj))
		}
	}
	return append(r, Since(m.CreationTimestamp, now))
}

// Table renders objs (all of kind) as `kubectl get` does: a header in
// capitals, then one row per object, columns aligned and 3 spaces apart.
// wide adds the -o wide columns, allNamespaces a leading NAMESPACE column.
func Table(kind messages.Kind, objs []messages.Object, wide bool, allNamespaces bool, now time.Time) string {
	var a Aligner
	return TableWith(&a, kind, objs, wide, allNamespaces, now)
}

// TableWith is Table through an Aligner that get -w keeps for the rows
// that follow.
func TableWith(a *Aligner, kind messages.Kind, objs []messages.Object, wide, allNamespaces bool, now time.Time) string {
	rows := [][]string{Header(kind, wide, allNamespaces)}
	for _, o := range objs {
		rows = append(rows, Row(o, wide, allNamespaces, now))
	}
	return a.Format(rows)
}
