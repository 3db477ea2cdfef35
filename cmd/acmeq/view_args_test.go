package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/view"
	"github.com/acmeq/acmeq/messages"
)

// TestFlagsAnywhere: flags may follow positional arguments and kubectl's
// glued short forms work, as users type them (these were the cases of the
// hand-made argument reordering that cobra's flag parser replaced).
func TestFlagsAnywhere(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want getOptions
	}{
		{[]string{"challenges", "-n", "default"}, getOptions{kind: messages.KindChallenge, namespace: "default"}},
		{[]string{"order", "x", "-ojsonpath={.status.url}"}, getOptions{kind: messages.KindOrder, name: "x", namespace: "default", output: view.Output{Format: view.FormatJSONPath}}},
		{[]string{"-ojson", "orders"}, getOptions{kind: messages.KindOrder, namespace: "default", output: view.Output{Format: view.FormatJSON}}},
		{[]string{"orders", "-o=wide", "-A", "-w"}, getOptions{kind: messages.KindOrder, namespace: "default", allNamespaces: true, watch: true, output: view.Output{Format: view.FormatWide}}},
		{[]string{"orders", "-ndev"}, getOptions{kind: messages.KindOrder, namespace: "dev"}},
		{[]string{"-A", "orders"}, getOptions{kind: messages.KindOrder, namespace: "default", allNamespaces: true}},
	} {
		got, err := parseGetArgs(tc.in)
		if err != nil {
			t.Errorf("get %q: %v", tc.in, err)
			continue
		}
		got.output.Template = nil
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("get %q = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	// After "--" everything is positional: "-n" is an argument, not a flag.
	e, err := parseEventsArgs([]string{"--since", "10m", "order/x"})
	if err != nil || e.since != 10*time.Minute || e.kind != messages.KindOrder || e.name != "x" {
		t.Errorf("events --since 10m order/x = %+v, %v", e, err)
	}
	if _, err := parseEventsArgs([]string{"--since", "10m", "order/x", "--", "-n"}); err == nil || !strings.Contains(err.Error(), `unexpected arguments ["-n"]`) {
		t.Errorf("events ... -- -n: %v, want -n taken as an argument", err)
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
	for _, bad := range [][]string{{}, {"pods"}, {"orders", "-o", "xml"}, {"orders", "a", "b"}, {"secrets", "-w", "-o", "yaml"}, {"order", "x", "-A"}, {"order", "Bad.Name"}} {
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
