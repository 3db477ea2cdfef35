package main

import (
	"flag"
	"slices"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/view"
	"github.com/acmeq/acmeq/messages"
)

func TestReorderArgs(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.String("n", "default", "")
	fs.String("o", "", "")
	fs.Bool("A", false, "")
	fs.Bool("w", false, "")
	fs.Duration("since", 0, "")
	for _, tc := range []struct{ in, want []string }{
		{[]string{"challenges", "-n", "default"}, []string{"-n", "default", "challenges"}},
		{[]string{"order", "x", "-ojsonpath={.status.url}"}, []string{"-o", "jsonpath={.status.url}", "order", "x"}},
		{[]string{"-ojson", "orders"}, []string{"-o", "json", "orders"}},
		{[]string{"orders", "-o=wide", "-A", "-w"}, []string{"-o=wide", "-A", "-w", "orders"}},
		{[]string{"orders", "-ndev"}, []string{"-n", "dev", "orders"}},
		{[]string{"--since", "10m", "order/x", "--", "-n"}, []string{"--since", "10m", "order/x", "-n"}},
		{[]string{"-A", "orders"}, []string{"-A", "orders"}},
	} {
		if got := reorderArgs(fs, tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("reorderArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseArgs(t *testing.T) {
	o, err := parseGetArgs([]string{"challenge", "example-com-1-2-0", "-ojsonpath={.spec.authorizationURL}", "-n", "shop"})
	if err != nil || o.kind != messages.KindChallenge || o.name != "example-com-1-2-0" || o.namespace != "shop" || o.output.Format != view.FormatJSONPath {
		t.Errorf("get challenge ... = %+v, %v", o, err)
	}
	o, err = parseGetArgs([]string{"cr/shop-1", "--output", "wide"})
	if err != nil || o.kind != messages.KindCertificateRequest || o.name != "shop-1" || o.output.Format != view.FormatWide || o.namespace != "default" {
		t.Errorf("get cr/shop-1 --output wide = %+v, %v", o, err)
	}
	for _, bad := range [][]string{{}, {"pods"}, {"orders", "-o", "xml"}, {"orders", "a", "b"}, {"secrets"}, {"order", "x", "-A"}, {"order", "Bad.Name"}} {
		if _, err := parseGetArgs(bad); err == nil {
			t.Errorf("get %q: no error", bad)
		}
	}
	e, err := parseEventsArgs([]string{"order/x", "-f", "--since", "10m", "-o", "json", "-A"})
	if err != nil || e.kind != messages.KindOrder || e.name != "x" || !e.follow || e.since != 10*time.Minute || !e.json || !e.allNamespaces {
		t.Errorf("events order/x ... = %+v, %v", e, err)
	}
	if e, err := parseEventsArgs(nil); err != nil || e.kind != "" || e.namespace != "default" {
		t.Errorf("events = %+v, %v", e, err)
	}
	if _, err := parseEventsArgs([]string{"-o", "yaml"}); err == nil {
		t.Error("events -o yaml: no error")
	}
}
