package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/internal/view"
	"github.com/acmeq/acmeq/messages"
)

// runDescribe is `acmeq describe KIND [NAME] [-n NS]`: the resource, its
// status and its events, as kubectl describe shows them. Without a name
// it describes every resource of the kind in the namespace.
func runDescribe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("describe", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: acmeq describe KIND [NAME] [-n NS]")
		fs.PrintDefaults()
	}
	var ns string
	namespaceFlags(fs, &ns)
	if err := fs.Parse(reorderArgs(fs, args)); err != nil {
		return exitError{code: 2}
	}
	kind, name, err := kindAndName(fs.Args(), false)
	if err != nil {
		return exitError{code: 2, msg: "describe: " + err.Error()}
	}
	nc, js, st, err := openReadStore(ctx, "acmeq-describe")
	if err != nil {
		return err
	}
	defer nc.Close()
	return describeResources(ctx, os.Stdout, os.Stderr, st, js, kind, ns, name, time.Now())
}

// described is a resource with its events.
type described struct {
	obj    messages.Object
	events []messages.Event
}

// describeResources prints the named resource (every resource of kind in
// ns when name is empty) with its events.
func describeResources(ctx context.Context, out, errOut io.Writer, st *store.Store, js jetstream.JetStream, kind messages.Kind, ns, name string, now time.Time) error {
	items, err := collectDescribed(ctx, st, js, kind, ns, name)
	if err != nil {
		return notFound(errOut, kind, name, err)
	}
	if len(items) == 0 {
		noResources(errOut, ns, false)
		return nil
	}
	return renderDescribed(out, items, now)
}

// collectDescribed reads the resources and the events recorded about each.
func collectDescribed(ctx context.Context, st *store.Store, js jetstream.JetStream, kind messages.Kind, ns, name string) ([]described, error) {
	objs, err := fetchResources(ctx, st, getOptions{kind: kind, namespace: ns, name: name})
	if err != nil {
		return nil, err
	}
	out := make([]described, 0, len(objs))
	for _, obj := range objs {
		m := obj.GetMeta()
		evs, err := bus.ReadEvents(ctx, js, bus.EventsOptions{Filter: messages.EventFilter(kind, m.Namespace, m.Name)})
		if err != nil {
			return nil, err
		}
		out = append(out, described{obj: obj, events: evs})
	}
	return out, nil
}

// renderDescribed prints the descriptions, separated as kubectl separates
// them (two empty lines).
func renderDescribed(out io.Writer, items []described, now time.Time) error {
	for i, it := range items {
		sep := ""
		if i > 0 {
			sep = "\n\n"
		}
		if _, err := io.WriteString(out, sep+view.Describe(it.obj, it.events, now)); err != nil {
			return err
		}
	}
	return nil
}
