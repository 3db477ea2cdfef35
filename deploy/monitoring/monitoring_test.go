package monitoring

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"text/template"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/acmeq/acmeq/internal/ui"
)

// exported returns every metric name acmeq exports: the fleet view's
// (internal/ui), the workers' (the Name: and NewDesc strings of
// worker/metrics.go), and Prometheus' own up.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{"up": true}
	for _, n := range ui.MetricNames() {
		names[n] = true
	}
	src, err := os.ReadFile("../../worker/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?:Name:\s*|NewDesc\()"(acmeq_[a-z0-9_]+)"`)
	found := 0
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		names[m[1]] = true
		found++
	}
	if found < 5 {
		t.Fatalf("found only %d metric names in worker/metrics.go: has its style changed?", found)
	}
	return names
}

// known reports whether name is exported, counting a histogram's _bucket,
// _sum and _count series.
func known(names map[string]bool, name string) bool {
	if names[name] {
		return true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok && names[base] {
			return true
		}
	}
	return false
}

var promql = parser.NewParser(parser.Options{})

// metricNames parses a PromQL expression and returns the metric names its
// selectors name.
func metricNames(expr string) ([]string, error) {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel {
				name = m.Value
			}
		}
		out = append(out, name)
		return nil
	})
	return out, nil
}

// checkExpr parses expr and checks that each metric it names is exported.
func checkExpr(names map[string]bool, expr string) error {
	ms, err := metricNames(expr)
	if err != nil {
		return fmt.Errorf("does not parse: %w", err)
	}
	if len(ms) == 0 {
		return fmt.Errorf("names no metric")
	}
	for _, m := range ms {
		if !known(names, m) {
			return fmt.Errorf("names %s, which acmeq does not export", m)
		}
	}
	return nil
}

// TestCheckExpr: the check itself catches a misspelt metric, an unknown
// one and a query that does not parse.
func TestCheckExpr(t *testing.T) {
	names := exported(t)
	for expr, ok := range map[string]bool{
		`sum by (endpoint) (rate(acmeq_acme_requests_total[5m]))`:                             true,
		`histogram_quantile(0.99, sum by (le) (rate(acmeq_acme_request_seconds_bucket[5m])))`: true,
		`acmeq_certificate_expiration_timestamp_seconds - time() < 7 * 86400`:                 true,
		`up{job="acmeq-worker"} == 0`:                                                         true,
		`rate(acmeq_acme_request_total[5m])`:                                                  false,
		`certmanager_certificate_ready_status == 1`:                                           false,
		`{__name__="acmeq_nope"}`:                                                             false,
		`sum(rate(acmeq_acme_requests_total[5m])`:                                             false,
		`vector(1)`: false,
	} {
		if err := checkExpr(names, expr); (err == nil) != ok {
			t.Errorf("%s: %v, want ok=%v", expr, err, ok)
		}
	}
}

// exprs collects every "expr" string in a decoded JSON document.
func exprs(v any, path string, out map[string]string) {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			if s, ok := c.(string); ok && k == "expr" {
				out[path+"."+k] = s
				continue
			}
			exprs(c, path+"."+k, out)
		}
	case []any:
		for i, c := range t {
			exprs(c, fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
}

// TestDashboard: the dashboard is JSON with unique panel ids, and every
// query (panels and template variables) names metrics acmeq exports.
func TestDashboard(t *testing.T) {
	names := exported(t)
	b, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string           `json:"title"`
		UID    string           `json:"uid"`
		Panels []map[string]any `json:"panels"`
		Templ  struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard without title, uid or panels")
	}
	ids := map[float64]bool{}
	for _, p := range dash.Panels {
		id, _ := p["id"].(float64)
		if id == 0 || ids[id] {
			t.Errorf("panel %q: missing or repeated id %v", p["title"], p["id"])
		}
		ids[id] = true
		if _, ok := p["gridPos"].(map[string]any); !ok {
			t.Errorf("panel %q has no gridPos", p["title"])
		}
	}
	var doc any
	_ = json.Unmarshal(b, &doc)
	found := map[string]string{}
	exprs(doc, "", found)
	if len(found) < 20 {
		t.Fatalf("only %d queries in the dashboard", len(found))
	}
	used := map[string]bool{}
	for path, e := range found {
		if err := checkExpr(names, e); err != nil {
			t.Errorf("%s: %q %v", path, e, err)
		}
		ms, _ := metricNames(e)
		for _, m := range ms {
			used[m] = true
		}
	}
	// label_values(metric, label) of the template variables.
	lv := regexp.MustCompile(`^label_values\(([a-z_:][a-z0-9_:]*),\s*[a-z_]+\)$`)
	for _, v := range dash.Templ.List {
		if v.Type != "query" {
			continue
		}
		m := lv.FindStringSubmatch(v.Definition)
		if m == nil || !known(names, m[1]) {
			t.Errorf("variable %s: %q is not label_values of an exported metric", v.Name, v.Definition)
		}
	}
	// What the issue asks the dashboard to show.
	for _, want := range []string{ui.MetricExpiration, ui.MetricRenewal, ui.MetricReady, ui.MetricFailedAttempts, ui.MetricQueuePending,
		ui.MetricSchedulerBacklog, ui.MetricSchedulerInflight, ui.MetricSchedulerCap, "acmeq_acme_requests_total"} {
		if !used[want] {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}

// rules is the layout of a Prometheus rule file.
type rules struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestAlerts: alerts.yaml is a valid rule file (no unknown fields), each
// alert has a query on exported metrics, a duration, a severity, a summary
// and a description whose templates parse, and the alerts the issue asks
// for are there.
func TestAlerts(t *testing.T) {
	names := exported(t)
	b, err := os.ReadFile("alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rf rules
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	if len(rf.Groups) == 0 {
		t.Fatal("alerts.yaml has no groups")
	}
	// Prometheus' alert templates: text/template with its functions.
	funcs := template.FuncMap{}
	for _, f := range []string{"humanize", "humanizeDuration", "humanizePercentage", "humanizeTimestamp", "query", "first", "label", "value", "printf", "title", "toUpper", "toLower", "reReplaceAll", "safeHtml", "match", "args", "externalURL", "pathPrefix", "tableLink", "graphLink", "strvalue", "sortByLabel", "stripPort", "stripDomain", "parseDuration", "toTime", "humanize1024"} {
		funcs[f] = func(...any) string { return "" }
	}
	alerts := map[string]string{}
	groups := map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" || groups[g.Name] {
			t.Errorf("group %q: empty or repeated name", g.Name)
		}
		groups[g.Name] = true
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule without alert (recording rules are not expected here)", g.Name)
				continue
			}
			if _, dup := alerts[r.Alert]; dup {
				t.Errorf("alert %s twice", r.Alert)
			}
			alerts[r.Alert] = r.Expr
			if err := checkExpr(names, r.Expr); err != nil {
				t.Errorf("alert %s: %v", r.Alert, err)
			}
			if _, err := model.ParseDuration(r.For); err != nil {
				t.Errorf("alert %s: for %q: %v", r.Alert, r.For, err)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, s)
			}
			for _, a := range []string{"summary", "description"} {
				text := r.Annotations[a]
				if text == "" {
					t.Errorf("alert %s: no %s", r.Alert, a)
					continue
				}
				if _, err := template.New(a).Funcs(funcs).Parse("{{$labels := .Labels}}{{$value := .Value}}" + text); err != nil {
					t.Errorf("alert %s: %s: %v", r.Alert, a, err)
				}
			}
		}
	}
	for alert, want := range map[string]string{
		"AcmeqCertificateExpiringNotRenewed": ui.MetricExpiration,
		"AcmeqCertificateIssuanceFailing":    ui.MetricFailedAttempts,
		"AcmeqChallengeBacklogGrowing":       ui.MetricSchedulerBacklog,
		"AcmeqQueueLag":                      ui.MetricQueuePending,
		"AcmeqWorkerDown":                    `up{job="acmeq-worker"} == 0`,
	} {
		expr, ok := alerts[alert]
		if !ok {
			t.Errorf("no alert %s", alert)
			continue
		}
		if !strings.Contains(expr, want) {
			t.Errorf("alert %s: %q does not use %s", alert, expr, want)
		}
	}
	if t.Failed() {
		keys := make([]string, 0, len(alerts))
		for k := range alerts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		t.Logf("alerts: %v", keys)
	}
}
