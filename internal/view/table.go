package view

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/acmeq/acmeq/messages"
)

// kubectl get prints through a tabwriter with a minimum cell width of 6
// and a padding of 3 spaces; the last column is not padded.
const (
	tableMinWidth = 6
	tablePadding  = 3
)

// Aligner lays out rows of cells as kubectl's tables: every column but the
// last is padded to its widest cell plus 3 spaces (at least 6 wide). It
// remembers the widths it used, so rows formatted later (get -w, events
// -f) line up with the rows before them; a wider cell widens its column
// from then on.
type Aligner struct {
	widths []int
}

// Format returns the rows, one line each.
func (a *Aligner) Format(rows [][]string) string {
	for _, row := range rows {
		for i := 0; i < len(row)-1; i++ {
			for len(a.widths) <= i {
				a.widths = append(a.widths, 0)
			}
			w := max(tableMinWidth, utf8.RuneCountInString(cleanCell(row[i]))+tablePadding)
			a.widths[i] = max(a.widths[i], w)
		}
	}
	var b strings.Builder
	for _, row := range rows {
		for i, cell := range row {
			cell = cleanCell(cell)
			b.WriteString(cell)
			if i < len(row)-1 {
				b.WriteString(strings.Repeat(" ", a.widths[i]-utf8.RuneCountInString(cell)))
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// cleanCell keeps a cell on one line.
func cleanCell(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\t", " ").Replace(s)
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

// columns are cert-manager's printer columns for each kind (NAME and AGE
// are added around them).
var columns = map[messages.Kind][]column{
	messages.KindIssuer: {
		{name: "READY", value: func(o messages.Object) string { return readyStatus(o.(*messages.Issuer).Status.Conditions) }},
		{name: "STATUS", wide: true, value: func(o messages.Object) string { return readyMessage(o.(*messages.Issuer).Status.Conditions) }},
	},
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
