package solvers

import (
	"errors"
	"testing"

	"github.com/acmeq/acmeq/messages"
)

// Solvers for the table below. Each DNS-01 solver has its own nameserver
// and each HTTP-01 one a selector, so that the test can tell which one was
// picked by its index.
func httpSolver(sel *messages.SolverSelector) messages.ACMESolver {
	return messages.ACMESolver{Selector: sel, HTTP01: &messages.HTTP01Solver{}}
}

func dnsSolver(sel *messages.SolverSelector) messages.ACMESolver {
	return messages.ACMESolver{Selector: sel, DNS01: &messages.DNS01Solver{RFC2136: &messages.RFC2136Provider{Nameserver: "127.0.0.1:53"}}}
}

func names(n ...string) *messages.SolverSelector { return &messages.SolverSelector{DNSNames: n} }
func zones(z ...string) *messages.SolverSelector { return &messages.SolverSelector{DNSZones: z} }
func labels(kv ...string) *messages.SolverSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &messages.SolverSelector{MatchLabels: m}
}

func TestSelect(t *testing.T) {
	t.Parallel()
	exists := map[string]string{"label": "exists"}
	twoLabels := map[string]string{"label": "exists", "another": "matches"}
	tests := []struct {
		name     string
		solvers  []messages.ACMESolver
		dnsName  string
		wildcard bool
		labels   map[string]string
		offered  []string // nil: Select's default for the wildcard flag
		want     int      // index of the solver picked, -1 for none
		wantType string
		wantErr  string // the whole error message, when want is -1
	}{
		// cert-manager's own cases (pkg/util/solverpicker/solverpicker_test.go).
		{name: "configured default solver when no others are present",
			solvers: []messages.ACMESolver{httpSolver(nil)}, dnsName: "example.com", want: 0, wantType: "HTTP-01"},
		{name: "default solver with a non-nil empty selector",
			solvers: []messages.ACMESolver{httpSolver(&messages.SolverSelector{})}, dnsName: "example.com", want: 0, wantType: "HTTP-01"},
		{name: "default solver when others do not match",
			solvers: []messages.ACMESolver{httpSolver(nil), httpSolver(labels("label", "does-not-exist", "does-not", "match"))},
			dnsName: "example.com", want: 0, wantType: "HTTP-01"},
		{name: "DNS01 solver over HTTP01 if only DNS01 is offered",
			solvers: []messages.ACMESolver{httpSolver(nil), dnsSolver(nil)}, dnsName: "example.com",
			offered: []string{"dns-01"}, want: 1, wantType: "DNS-01"},
		{name: "none match",
			solvers: []messages.ACMESolver{httpSolver(labels("label", "does-not-exist", "does-not", "match"))}, dnsName: "example.com", want: -1,
			wantErr: `no solver matches "example.com": solver 0 (http01): matchLabels does-not=match (the Certificate has no label "does-not"), label=does-not-exist (the Certificate has no label "label")`},
		{name: "selector explicitly names dnsName",
			solvers: []messages.ACMESolver{httpSolver(nil), httpSolver(names("example.com"))}, dnsName: "example.com", want: 1, wantType: "HTTP-01"},
		{name: "selector explicitly names dnsName (reversed)",
			solvers: []messages.ACMESolver{httpSolver(names("example.com")), httpSolver(nil)}, dnsName: "example.com", want: 0, wantType: "HTTP-01"},
		{name: "default solver if dnsName does not match",
			solvers: []messages.ACMESolver{httpSolver(nil), httpSolver(names("example.com"))}, dnsName: "notexample.com", want: 0, wantType: "HTTP-01"},
		{name: "same dnsName: the one with the most labels",
			solvers: []messages.ACMESolver{httpSolver(names("example.com")), httpSolver(&messages.SolverSelector{DNSNames: []string{"example.com"}, MatchLabels: exists})},
			dnsName: "example.com", labels: exists, want: 1, wantType: "HTTP-01"},
		{name: "dnsNames match beats a labels match",
			solvers: []messages.ACMESolver{httpSolver(names("example.com")), httpSolver(labels("label", "exists"))},
			dnsName: "example.com", labels: exists, want: 0, wantType: "HTTP-01"},
		{name: "dnsNames match beats a labels match (reversed)",
			solvers: []messages.ACMESolver{httpSolver(labels("label", "exists")), httpSolver(names("example.com"))},
			dnsName: "example.com", labels: exists, want: 1, wantType: "HTTP-01"},
		{name: "dnsNames match beats a 2-labels match",
			solvers: []messages.ACMESolver{httpSolver(names("example.com")), httpSolver(labels("label", "exists", "another", "matches"))},
			dnsName: "example.com", labels: twoLabels, want: 0, wantType: "HTTP-01"},
		{name: "most labels matching",
			solvers: []messages.ACMESolver{httpSolver(labels("label", "exists")), httpSolver(labels("label", "exists", "another", "matches"))},
			dnsName: "example.com", labels: twoLabels, want: 1, wantType: "HTTP-01"},
		{name: "wildcard dnsName selector matches a wildcard authorization",
			solvers: []messages.ACMESolver{dnsSolver(nil), dnsSolver(names("*.example.com"))}, dnsName: "example.com", wildcard: true, want: 1, wantType: "DNS-01"},
		{name: "dnsName beats dnsZone",
			solvers: []messages.ACMESolver{httpSolver(names("example.com")), httpSolver(zones("com"))}, dnsName: "example.com", want: 0, wantType: "HTTP-01"},
		{name: "dnsName beats dnsZone (reversed)",
			solvers: []messages.ACMESolver{dnsSolver(zones("com")), httpSolver(names("example.com"))}, dnsName: "example.com", want: 1, wantType: "HTTP-01"},
		{name: "dnsZones match a wildcard below the zone",
			solvers: []messages.ACMESolver{dnsSolver(nil), dnsSolver(zones("example.com"))}, dnsName: "www.example.com", wildcard: true, want: 1, wantType: "DNS-01"},
		{name: "most specific dnsZone",
			solvers: []messages.ACMESolver{dnsSolver(zones("example.com")), dnsSolver(zones("prod.example.com"))}, dnsName: "www.prod.example.com", wildcard: true, want: 1, wantType: "DNS-01"},
		{name: "most specific dnsZone (reversed)",
			solvers: []messages.ACMESolver{dnsSolver(zones("prod.example.com")), dnsSolver(zones("example.com"))}, dnsName: "www.prod.example.com", wildcard: true, want: 0, wantType: "DNS-01"},
		{name: "same dnsZone: the one with the most labels",
			solvers: []messages.ACMESolver{httpSolver(zones("example.com")), httpSolver(&messages.SolverSelector{DNSZones: []string{"example.com"}, MatchLabels: exists})},
			dnsName: "www.example.com", labels: exists, want: 1, wantType: "HTTP-01"},
		{name: "both match dnsNames, one also dnsZones",
			solvers: []messages.ACMESolver{httpSolver(names("www.example.com")), httpSolver(&messages.SolverSelector{DNSZones: []string{"example.com"}, DNSNames: []string{"www.example.com"}})},
			dnsName: "www.example.com", want: 1, wantType: "HTTP-01"},
		{name: "both match dnsNames, one also dnsZones (reversed)",
			solvers: []messages.ACMESolver{httpSolver(&messages.SolverSelector{DNSZones: []string{"example.com"}, DNSNames: []string{"www.example.com"}}), httpSolver(names("www.example.com"))},
			dnsName: "www.example.com", want: 0, wantType: "HTTP-01"},

		// acmeq's own.
		{name: "no solvers means one HTTP-01 solver", solvers: nil, dnsName: "example.com", want: -2, wantType: "HTTP-01"},
		{name: "no solvers cannot validate a wildcard", solvers: nil, dnsName: "example.com", wildcard: true, want: -1,
			wantErr: `no solver matches "*.example.com": solver 0 (http01): HTTP-01 cannot validate a wildcard name`},
		{name: "wildcard skips HTTP-01 solvers",
			solvers: []messages.ACMESolver{httpSolver(nil), dnsSolver(zones("example.com"))}, dnsName: "example.com", wildcard: true, want: 1, wantType: "DNS-01"},
		{name: "wildcard dnsNames do not match the apex",
			solvers: []messages.ACMESolver{dnsSolver(names("*.example.com")), httpSolver(nil)}, dnsName: "example.com", want: 1, wantType: "HTTP-01"},
		{name: "apex dnsNames do not match the wildcard",
			solvers: []messages.ACMESolver{dnsSolver(names("example.com")), dnsSolver(nil)}, dnsName: "example.com", wildcard: true, want: 1, wantType: "DNS-01"},
		{name: "name given with its *. prefix",
			solvers: []messages.ACMESolver{dnsSolver(nil), dnsSolver(names("*.example.com"))}, dnsName: "*.example.com", wildcard: true, want: 1, wantType: "DNS-01"},
		{name: "dnsNames compared case-insensitively and without trailing dot",
			solvers: []messages.ACMESolver{httpSolver(nil), dnsSolver(names("WWW.Example.COM."))}, dnsName: "www.example.com", want: 1, wantType: "DNS-01"},
		{name: "dnsZones with a trailing dot and upper case",
			solvers: []messages.ACMESolver{httpSolver(nil), dnsSolver(zones("Example.COM."))}, dnsName: "a.b.example.com", want: 1, wantType: "DNS-01"},
		{name: "dnsZones match the zone apex itself",
			solvers: []messages.ACMESolver{httpSolver(nil), dnsSolver(zones("example.com"))}, dnsName: "example.com", want: 1, wantType: "DNS-01"},
		{name: "dnsZones match whole labels only",
			solvers: []messages.ACMESolver{dnsSolver(zones("ample.com")), httpSolver(nil)}, dnsName: "example.com", want: 1, wantType: "HTTP-01"},
		{name: "every condition must match: dnsNames and matchLabels",
			solvers: []messages.ACMESolver{dnsSolver(&messages.SolverSelector{DNSNames: []string{"example.com"}, MatchLabels: exists}), httpSolver(nil)},
			dnsName: "example.com", labels: map[string]string{"label": "other"}, want: 1, wantType: "HTTP-01"},
		{name: "every condition must match: dnsZones and dnsNames",
			solvers: []messages.ACMESolver{dnsSolver(&messages.SolverSelector{DNSNames: []string{"www.example.com"}, DNSZones: []string{"example.org"}})},
			dnsName: "www.example.com", want: -1,
			wantErr: `no solver matches "www.example.com": solver 0 (dns01): dnsZones ["example.org"] do not contain "www.example.com"`},
		{name: "ties keep list order",
			solvers: []messages.ACMESolver{dnsSolver(zones("example.com")), httpSolver(zones("example.com"))}, dnsName: "www.example.com", want: 0, wantType: "DNS-01"},
		{name: "ties keep list order without selectors",
			solvers: []messages.ACMESolver{httpSolver(nil), dnsSolver(nil)}, dnsName: "www.example.com", want: 0, wantType: "HTTP-01"},
		{name: "a solver without selector comes after any matching selector",
			solvers: []messages.ACMESolver{httpSolver(nil), dnsSolver(&messages.SolverSelector{})}, dnsName: "www.example.com", want: 0, wantType: "HTTP-01"},
		{name: "a zone match beats labels",
			solvers: []messages.ACMESolver{httpSolver(labels("label", "exists", "another", "matches")), dnsSolver(zones("example.com"))},
			dnsName: "www.example.com", labels: twoLabels, want: 1, wantType: "DNS-01"},
		{name: "labels match beats no selector",
			solvers: []messages.ACMESolver{httpSolver(nil), dnsSolver(labels("label", "exists"))}, dnsName: "www.example.com", labels: exists, want: 1, wantType: "DNS-01"},
		{name: "labels compared by value",
			solvers: []messages.ACMESolver{dnsSolver(labels("tier", "gold")), httpSolver(labels("tier", "silver"))},
			dnsName: "www.example.com", labels: map[string]string{"tier": "silver"}, want: 1, wantType: "HTTP-01"},
		{name: "split by selectors: HTTP-01 for one zone",
			solvers: []messages.ACMESolver{dnsSolver(zones("dns.test")), httpSolver(zones("http.test"))}, dnsName: "a.http.test", want: 1, wantType: "HTTP-01"},
		{name: "split by selectors: DNS-01 for the other",
			solvers: []messages.ACMESolver{dnsSolver(zones("dns.test")), httpSolver(zones("http.test"))}, dnsName: "a.dns.test", want: 0, wantType: "DNS-01"},
		{name: "nothing matches: every reason",
			solvers: []messages.ACMESolver{httpSolver(nil), dnsSolver(zones("example.org")), dnsSolver(names("*.example.org")), dnsSolver(labels("team", "a"))},
			dnsName: "example.com", wildcard: true, labels: map[string]string{"team": "b"}, want: -1,
			wantErr: `no solver matches "*.example.com": solver 0 (http01): HTTP-01 cannot validate a wildcard name; ` +
				`solver 1 (dns01): dnsZones ["example.org"] do not contain "*.example.com"; ` +
				`solver 2 (dns01): dnsNames ["*.example.org"] do not contain "*.example.com"; ` +
				`solver 3 (dns01): matchLabels team=a (the Certificate has team=b)`},
		{name: "an invalid solver is skipped with its reason",
			solvers: []messages.ACMESolver{{}, {HTTP01: &messages.HTTP01Solver{}, DNS01: &messages.DNS01Solver{}}}, dnsName: "example.com", want: -1,
			wantErr: `no solver matches "example.com": solver 0 (invalid): neither http01 nor dns01 is set; solver 1 (invalid): both http01 and dns01 are set`},
		{name: "a type the CA does not offer",
			solvers: []messages.ACMESolver{dnsSolver(nil)}, dnsName: "example.com", offered: []string{"http-01"}, want: -1,
			wantErr: `no solver matches "example.com": solver 0 (dns01): the CA does not offer dns-01 for this name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				got *messages.ACMESolver
				typ string
				err error
			)
			if tt.offered != nil {
				got, typ, err = SelectOffered(tt.solvers, tt.dnsName, tt.wildcard, tt.labels, tt.offered)
			} else {
				got, typ, err = Select(tt.solvers, tt.dnsName, tt.wildcard, tt.labels)
			}
			switch {
			case tt.want == -1:
				var nse *NoSolverError
				if err == nil || !errors.Is(err, ErrNoSolver) || !errors.As(err, &nse) {
					t.Fatalf("Select = %v, %q, %v; want a NoSolverError", got, typ, err)
				}
				if err.Error() != tt.wantErr {
					t.Errorf("error:\n got: %s\nwant: %s", err, tt.wantErr)
				}
				if got != nil || typ != "" {
					t.Errorf("Select returned %v, %q with its error", got, typ)
				}
				return
			case err != nil:
				t.Fatalf("Select: %v", err)
			case tt.want == -2:
				// The default solver is not in the list.
				if got.HTTP01 == nil || got.DNS01 != nil || got.Selector != nil {
					t.Errorf("Select = %+v, want the default HTTP-01 solver", got)
				}
			case got != &tt.solvers[tt.want]:
				t.Errorf("Select picked solver %d, want %d", indexOf(tt.solvers, got), tt.want)
			}
			if typ != tt.wantType {
				t.Errorf("type = %q, want %q", typ, tt.wantType)
			}
		})
	}
}

func indexOf(solvers []messages.ACMESolver, s *messages.ACMESolver) int {
	for i := range solvers {
		if &solvers[i] == s {
			return i
		}
	}
	return -1
}
