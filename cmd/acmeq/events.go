package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/view"
	"github.com/acmeq/acmeq/messages"
)

// eventsOptions is a parsed `acmeq events`.
type eventsOptions struct {
	kind          messages.Kind // "" for every kind
	name          string        // "" for every resource
	namespace     string
	allNamespaces bool
	follow        bool
	since         time.Duration
	json          bool
}

// runEvents is `acmeq events [KIND[/NAME]] [-n NS|-A] [-f] [--since 10m] [-o json]`.
func runEvents(ctx context.Context, args []string) error {
	o, err := parseEventsArgs(args)
	if err != nil {
		return err
	}
	c, err := parseEnv[connEnv]()
	if err != nil {
		return err
	}
	nc, js, err := connectNATS(c.NATSURL, "acmeq-events")
	if err != nil {
		return err
	}
	defer nc.Close()
	return printEvents(ctx, os.Stdout, os.Stderr, js, o, time.Now)
}

func parseEventsArgs(args []string) (eventsOptions, error) {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: acmeq events [KIND[/NAME]] [-n NS|-A] [-f] [--since 10m] [-o json]")
		fs.PrintDefaults()
	}
	var o eventsOptions
	var output string
	namespaceFlags(fs, &o.namespace)
	allNamespacesFlags(fs, &o.allNamespaces)
	fs.BoolVar(&o.follow, "f", false, "keep printing events as they are recorded, until interrupted")
	fs.BoolVar(&o.follow, "follow", false, "same as -f")
	fs.BoolVar(&o.follow, "w", false, "same as -f")
	fs.BoolVar(&o.follow, "watch", false, "same as -f")
	fs.DurationVar(&o.since, "since", 0, "only events recorded within this duration, e.g. 10m")
	fs.StringVar(&output, "o", "", "output format: json (one event per line)")
	fs.StringVar(&output, "output", "", "same as -o")
	if err := fs.Parse(reorderArgs(fs, args)); err != nil {
		return o, exitError{code: 2}
	}
	switch output {
	case "":
	case "json":
		o.json = true
	default:
		return o, exitError{code: 2, msg: fmt.Sprintf("events: output format %q is not supported (want json)", output)}
	}
	if o.since < 0 {
		return o, exitError{code: 2, msg: "events: --since must not be negative"}
	}
	if fs.NArg() > 0 {
		kind, name, err := kindAndName(fs.Args(), false)
		if err != nil {
			return o, exitError{code: 2, msg: "events: " + err.Error()}
		}
		o.kind, o.name = kind, name
	}
	return o, nil
}

// printEvents prints the stored events that match o (see renderEvents);
// with follow, every event as it is read, history first, then live ones
// until ctx ends.
func printEvents(ctx context.Context, out, errOut io.Writer, js jetstream.JetStream, o eventsOptions, now func() time.Time) error {
	ns := o.namespace
	if o.allNamespaces {
		ns = ""
	}
	opts := bus.EventsOptions{Filter: messages.EventFilter(o.kind, ns, o.name)}
	if o.since > 0 {
		opts.Since = now().Add(-o.since)
	}
	if o.follow {
		var al view.Aligner
		header := false
		var werr error
		err := bus.FollowEvents(ctx, js, opts, true, func(e messages.Event) {
			if werr != nil {
				return
			}
			if o.json {
				werr = writeEventJSON(out, e)
				return
			}
			var rows [][]string
			if !header {
				rows = append(rows, view.EventsHeader(o.allNamespaces))
				header = true
			}
			rows = append(rows, view.EventRow(e, o.allNamespaces, now()))
			_, werr = io.WriteString(out, al.Format(rows))
		})
		return errors.Join(err, werr)
	}
	evs, err := bus.ReadEvents(ctx, js, opts)
	if err != nil {
		return err
	}
	return renderEvents(out, errOut, o, evs, now())
}

// renderEvents prints stored events: aggregated (one row per object, type,
// reason and message, with its count) and ordered by when they were last
// seen, as `kubectl events` lists them.
func renderEvents(out, errOut io.Writer, o eventsOptions, evs []messages.Event, now time.Time) error {
	evs = view.AggregateEvents(evs)
	view.SortByLastSeen(evs)
	if o.json {
		for _, e := range evs {
			if err := writeEventJSON(out, e); err != nil {
				return err
			}
		}
		return nil
	}
	if len(evs) == 0 {
		if o.allNamespaces {
			fmt.Fprintln(errOut, "No events found.")
		} else {
			fmt.Fprintf(errOut, "No events found in %s namespace.\n", o.namespace)
		}
		return nil
	}
	_, err := io.WriteString(out, view.EventsTable(evs, o.allNamespaces, now))
	return err
}

// writeEventJSON prints one event on one line, with Kubernetes' Event
// field names.
func writeEventJSON(out io.Writer, e messages.Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = io.WriteString(out, strings.TrimSpace(string(b))+"\n")
	return err
}
