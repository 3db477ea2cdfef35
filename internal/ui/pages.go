package ui

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/internal/view"
	"github.com/acmeq/acmeq/messages"
)

// readTimeout bounds the store and stream reads of one page.
const readTimeout = 15 * time.Second

// maxSearch bounds the search parameter (a DNS name is at most 253).
const maxSearch = 253

// funcs are the template functions. Every value they return is text that
// html/template escapes; none returns template.HTML.
var funcs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
	"since": view.Since,
	"human": duration.HumanDuration,
	"lower": strings.ToLower,
}

// until is "in 3d4h" for a time ahead and "3d4h ago" for one past.
func until(t, now time.Time) string {
	if d := t.Sub(now); d >= 0 {
		return "in " + duration.HumanDuration(d)
	}
	return duration.HumanDuration(now.Sub(t)) + " ago"
}

// certFilter is the certificate list's query as the user typed it.
type certFilter struct {
	NS, L, State, Q, Sort string
	Per                   int
}

// values encodes the filter, with the page, as URL query parameters.
func (f certFilter) values(page int) url.Values {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("ns", f.NS)
	set("l", f.L)
	set("state", f.State)
	set("q", f.Q)
	set("sort", f.Sort)
	if f.Per != 0 {
		v.Set("per", strconv.Itoa(f.Per))
	}
	if page > 1 {
		v.Set("page", strconv.Itoa(page))
	}
	return v
}

func (f certFilter) link(page int) string {
	if q := f.values(page).Encode(); q != "" {
		return "/certificates?" + q
	}
	return "/certificates"
}

// paramError is a malformed query parameter: a 400 that names it.
type paramError struct {
	param, msg string
}

func (e *paramError) Error() string { return fmt.Sprintf("parameter %q: %s", e.param, e.msg) }

// parseCertQuery reads the list's parameters.
func (s *Server) parseCertQuery(v url.Values) (query, certFilter, error) {
	f := certFilter{NS: v.Get("ns"), L: strings.TrimSpace(v.Get("l")), State: v.Get("state"), Q: strings.TrimSpace(v.Get("q")), Sort: v.Get("sort")}
	q := query{namespace: f.NS, state: f.State, search: strings.ToLower(f.Q), sort: f.Sort, page: 1, per: s.cfg.PageSize}
	if f.NS != "" {
		if err := messages.ValidateObjectName("namespace", f.NS); err != nil {
			return q, f, &paramError{"ns", err.Error()}
		}
	}
	if f.L != "" {
		sel, err := labels.Parse(f.L)
		if err != nil {
			return q, f, &paramError{"l", "not a label selector (env=prod,tier in (edge,cdn),!canary): " + err.Error()}
		}
		q.selector = sel
	}
	if f.State != "" && f.State != FilterExpiring && !slices.Contains(States, State(f.State)) {
		names := []string{}
		for _, st := range States {
			names = append(names, string(st))
		}
		return q, f, &paramError{"state", fmt.Sprintf("unknown state %q (want one of %s, %s)", f.State, strings.Join(names, ", "), FilterExpiring)}
	}
	if len(f.Q) > maxSearch {
		return q, f, &paramError{"q", fmt.Sprintf("longer than %d characters", maxSearch)}
	}
	switch f.Sort {
	case "", SortName, SortExpiry:
	default:
		return q, f, &paramError{"sort", fmt.Sprintf("unknown order %q (want %s or %s)", f.Sort, SortName, SortExpiry)}
	}
	if p := v.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 1e7 {
			return q, f, &paramError{"page", fmt.Sprintf("%q is not a page number (1, 2, ...)", p)}
		}
		q.page = n
	}
	if p := v.Get("per"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > PageSizeMax {
			return q, f, &paramError{"per", fmt.Sprintf("%q is not a page size from 1 to %d", p, PageSizeMax)}
		}
		q.per, f.Per = n, n
	}
	return q, f, nil
}

// certRow is one certificate in the list.
type certRow struct {
	Namespace, Name, Link       string
	State                       string
	Ready, ReadyReason, Message string
	DNS, DNSAll                 string
	More                        int
	Issuer                      string
	Expires, ExpiresAt          string
	Expiring, Expired           bool
	Renews, RenewsAt            string
	RenewalDue                  bool
	Failed                      int
	Age                         string
}

func describeLink(kind messages.Kind, ns, name string) string {
	if messages.IsClusterScoped(kind) {
		// No namespace: its path segment is the cluster scope token.
		ns = messages.ClusterScope
	}
	return "/r/" + kind.Token() + "/" + url.PathEscape(ns) + "/" + url.PathEscape(name)
}

func (s *Server) row(e *entry, now time.Time, limit int64) certRow {
	r := certRow{
		Namespace: e.namespace, Name: e.name, Link: describeLink(messages.KindCertificate, e.namespace, e.name),
		State: string(e.state), Ready: string(e.ready), ReadyReason: e.readyReason,
		Issuer: e.issuerName, Failed: int(e.failed), Age: view.Since(time.Unix(e.created, 0), now),
	}
	if r.Ready == "" {
		r.Ready = string(messages.ConditionUnknown)
	}
	if e.state != StateReady {
		r.Message = e.readyMsg
		if e.state == StateFailing || e.state == StateRenewing || e.state == StateIssuing {
			if _, msg, ok := strings.Cut(e.issuingReason, ": "); ok && msg != "" {
				r.Message = msg
			}
		}
	}
	if len(e.dnsNames) > 0 {
		r.DNS, r.More, r.DNSAll = e.dnsNames[0], len(e.dnsNames)-1, strings.Join(e.dnsNames, ", ")
	}
	if e.notAfter != 0 {
		t := time.Unix(e.notAfter, 0)
		r.Expires, r.ExpiresAt = until(t, now), t.UTC().Format(time.RFC3339)
		r.Expired = !t.After(now)
		r.Expiring = e.notAfter < limit
	}
	if e.renewal != 0 {
		t := time.Unix(e.renewal, 0)
		r.Renews, r.RenewsAt = until(t, now), t.UTC().Format(time.RFC3339)
		r.RenewalDue = !t.After(now)
	}
	return r
}

// tile is one count at the top of the list, a link that filters by it.
type tile struct {
	Label, Link, Class string
	Count              int
	Active             bool
}

type certsPage struct {
	Synced         bool
	Loaded         int
	Version        uint64
	LiveURL        string
	Filter         certFilter
	Tiles          []tile
	Rows           []certRow
	Total, Page    int
	Pages          int
	From, To       int
	Prev, Next     string
	ExpiringWithin string
	States         []string
	Namespaces     []string
	Self           string
}

var stateLabels = map[string]string{
	string(StateReady): "Ready", string(StateIssuing): "Issuing", string(StateRenewing): "Renewing",
	string(StateFailing): "Failing", string(StateNotReady): "Not ready", FilterExpiring: "Expiring",
}

func (s *Server) handleCertificates(w http.ResponseWriter, r *http.Request) {
	q, f, err := s.parseCertQuery(r.URL.Query())
	if pe := (*paramError)(nil); errors.As(err, &pe) {
		s.badParam(w, r, pe.param, "%s", pe.msg)
		return
	}
	n, synced, version, _ := s.index.status()
	now := s.cfg.Now()
	entries := s.index.all()
	res := q.run(entries, now, s.cfg.ExpiringWithin)
	limit := now.Add(s.cfg.ExpiringWithin).Unix()
	p := &certsPage{
		Synced: synced, Loaded: n, Version: version, Filter: f, Total: res.total, Page: q.page, Pages: res.pages,
		ExpiringWithin: duration.HumanDuration(s.cfg.ExpiringWithin),
	}
	p.LiveURL = "/live/certificates"
	p.Self = f.link(q.page)
	for _, st := range States {
		p.States = append(p.States, string(st))
	}
	p.States = append(p.States, FilterExpiring)
	all := f
	all.State = ""
	p.Tiles = append(p.Tiles, tile{Label: "All", Count: res.all, Link: all.link(1), Active: f.State == "", Class: "all"})
	for _, st := range p.States {
		count := res.counts[State(st)]
		if st == FilterExpiring {
			count = res.expiring
		}
		g := f
		g.State = st
		p.Tiles = append(p.Tiles, tile{Label: stateLabels[st], Count: count, Link: g.link(1), Active: f.State == st, Class: st})
	}
	for _, e := range res.rows {
		p.Rows = append(p.Rows, s.row(e, now, limit))
	}
	if res.total > 0 {
		p.From = min((q.page-1)*q.per+1, res.total)
		p.To = (q.page-1)*q.per + len(res.rows)
	}
	if q.page > 1 {
		p.Prev = f.link(min(q.page-1, res.pages))
	}
	if q.page < res.pages {
		p.Next = f.link(q.page + 1)
	}
	p.Namespaces = namespaces(entries, 200)
	s.render(w, r, http.StatusOK, "certificates", p)
}

// namespaces lists up to max distinct namespaces of sorted entries.
func namespaces(entries []*entry, max int) []string {
	var out []string
	for _, e := range entries {
		if len(out) == 0 || out[len(out)-1] != e.namespace {
			out = append(out, e.namespace)
			if len(out) == max {
				break
			}
		}
	}
	return out
}

// validName checks a namespace or name taken from a request; it becomes a
// NATS subject token, so nothing but a valid name may pass.
func validName(param, v string) *paramError {
	if err := messages.ValidateObjectName(param, v); err != nil {
		return &paramError{param, err.Error()}
	}
	return nil
}

// describePage is a resource's describe view.
type describePage struct {
	Kind, Namespace, Name string
	Text                  string
	NotFound              bool
	Events                []eventRow
	Owner                 *link
	Tree                  []treeRequest
	Orders                []treeOrder
	TreeNote              string
}

type link struct{ Label, URL string }

func (s *Server) handleDescribe(w http.ResponseWriter, r *http.Request) {
	kind, err := messages.ParseKind(r.PathValue("kind"))
	if err != nil {
		s.fail(w, r, http.StatusNotFound, "Unknown kind", fmt.Sprintf("There is no resource kind %q: the fleet view shows issuers, certificates, certificaterequests, orders and challenges.", r.PathValue("kind")))
		return
	}
	if kind == messages.KindSecret {
		s.fail(w, r, http.StatusNotFound, "Not shown", "Secrets are not shown in the fleet view.")
		return
	}
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	switch {
	case messages.IsClusterScoped(kind) && ns != messages.ClusterScope:
		s.badParam(w, r, "namespace", "a %s has no namespace: its path is /r/%s/%s/NAME", kind, kind.Token(), messages.ClusterScope)
		return
	case messages.IsClusterScoped(kind):
		ns = ""
	default:
		if pe := validName("namespace", ns); pe != nil {
			s.badParam(w, r, pe.param, "%s", pe.msg)
			return
		}
	}
	if pe := validName("name", name); pe != nil {
		s.badParam(w, r, pe.param, "%s", pe.msg)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	p := &describePage{Kind: string(kind), Namespace: ns, Name: name}
	obj, _ := messages.New(kind)
	err = s.store.Get(ctx, ns, name, obj)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.fail(w, r, http.StatusServiceUnavailable, "Store unavailable", "Reading "+string(kind)+" "+ns+"/"+name+" failed: "+err.Error())
		return
	}
	evs, evErr := s.readEvents(ctx, messages.EventFilter(kind, ns, name))
	now := s.cfg.Now()
	for _, e := range view.AggregateEvents(evs) {
		p.Events = append(p.Events, newEventRow(e, now))
	}
	if errors.Is(err, store.ErrNotFound) {
		p.NotFound = true
		status := http.StatusNotFound
		s.render(w, r, status, "describe", p)
		return
	}
	if evErr != nil {
		s.cfg.Logger.Warn("ui: read events", "kind", kind, "namespace", ns, "name", name, "err", evErr)
	}
	p.Text = view.Describe(obj, evs, now)
	if o := obj.GetMeta().OwnerReference; o != nil {
		p.Owner = &link{Label: strings.ToLower(string(o.Kind)) + "/" + o.Name, URL: describeLink(o.Kind, cmpOr(o.Namespace, ns), o.Name)}
	}
	switch o := obj.(type) {
	case *messages.Certificate:
		p.Tree, err = s.certificateTree(ctx, o)
	case *messages.CertificateRequest:
		var reqs []treeRequest
		reqs, err = s.requestTrees(ctx, ns, []*messages.CertificateRequest{o}, []string{"this request"})
		if len(reqs) == 1 {
			p.Orders = reqs[0].Orders
		}
	case *messages.Order:
		var t treeOrder
		t, err = s.orderTree(ctx, o)
		p.Orders = []treeOrder{t}
	}
	if err != nil {
		p.TreeNote = "The order and challenge tree is incomplete: " + err.Error()
	}
	s.render(w, r, http.StatusOK, "describe", p)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// issuerRow is one Issuer or ClusterIssuer.
type issuerRow struct {
	Kind, Namespace, Name, Link, Ready, Reason, Message, Server, Age string
}

// handleIssuers lists the ClusterIssuers, then the Issuers of every
// namespace, as kubectl get clusterissuers,issuers -A would.
func (s *Server) handleIssuers(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	if s.store.KV(messages.KindIssuer) == nil {
		s.fail(w, r, http.StatusServiceUnavailable, "Issuers unavailable", "The fleet view's store was opened without the Issuer bucket.")
		return
	}
	now := s.cfg.Now()
	var rows []issuerRow
	for _, kind := range []messages.Kind{messages.KindClusterIssuer, messages.KindIssuer} {
		if s.store.KV(kind) == nil {
			continue // a store opened before ClusterIssuers existed
		}
		objs, err := s.store.List(ctx, kind, "")
		if err != nil {
			s.fail(w, r, http.StatusServiceUnavailable, "Store unavailable", "Listing "+strings.ToLower(string(kind))+"s failed: "+err.Error())
			return
		}
		for _, o := range objs {
			rows = append(rows, newIssuerRow(kind, o.(*messages.Issuer), now))
		}
	}
	s.render(w, r, http.StatusOK, "issuers", rows)
}

func newIssuerRow(kind messages.Kind, iss *messages.Issuer, now time.Time) issuerRow {
	row := issuerRow{Kind: string(kind), Namespace: iss.Metadata.Namespace, Name: iss.Metadata.Name, Ready: string(messages.ConditionUnknown),
		Link: describeLink(kind, iss.Metadata.Namespace, iss.Metadata.Name), Age: view.Since(iss.Metadata.CreationTimestamp, now)}
	if c := messages.GetCondition(iss.Status.Conditions, messages.ConditionReady); c != nil {
		row.Ready, row.Reason, row.Message = string(c.Status), c.Reason, c.Message
	}
	if iss.Spec.ACME != nil {
		row.Server = iss.Spec.ACME.Server
	}
	return row
}
