package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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
	reasons       []string // only events with one of these reasons; none: all
	types         []string // only events of these types (Normal, Warning); none: all
}

// matches reports whether e passes the --reason and --types filters
// (case-insensitive, as kubectl's --types).
func (o eventsOptions) matches(e messages.Event) bool {
	in := func(list []string, v string) bool {
		if len(list) == 0 {
			return true
		}
		return slices.ContainsFunc(list, func(s string) bool { return strings.EqualFold(s, v) })
	}
	return in(o.reasons, e.Reason) && in(o.types, string(e.Type))
}

// eventsFlags are the flags of `acmeq events`.
type eventsFlags struct {
	o      eventsOptions
	output string
}

func (f *eventsFlags) register(fs *pflag.FlagSet) {
	namespaceFlag(fs, &f.o.namespace)
	fs.BoolVarP(&f.o.allNamespaces, "all-namespaces", "A", false, "events of every namespace")
	fs.BoolVarP(&f.o.follow, "follow", "f", false, "keep printing events as they are recorded, until interrupted")
	fs.BoolVarP(&f.o.follow, "watch", "w", false, "same as -f")
	fs.DurationVar(&f.o.since, "since", 0, "only events recorded within this duration, e.g. 10m")
	fs.StringVarP(&f.output, "output", "o", "", "output format: json (one event per line)")
	fs.StringSliceVar(&f.o.reasons, "reason", nil, "only events with this reason, e.g. Issued (repeat or comma-separate for several)")
	fs.StringSliceVar(&f.o.types, "types", nil, "only events of these types: Normal, Warning (repeat or comma-separate)")
}

func (f eventsFlags) options(args []string) (eventsOptions, error) {
	o := f.o
	switch f.output {
	case "":
	case "json":
		o.json = true
	default:
		return o, fmt.Errorf("output format %q is not supported (want json)", f.output)
	}
	if o.since < 0 {
		return o, errors.New("--since must not be negative")
	}
	for _, t := range o.types {
		if !strings.EqualFold(t, string(messages.EventNormal)) && !strings.EqualFold(t, string(messages.EventWarning)) {
			return o, fmt.Errorf("--types %q: want Normal or Warning", t)
		}
	}
	for _, r := range o.reasons {
		if r == "" {
			return o, errors.New("--reason must not be empty")
		}
	}
	if len(args) > 0 {
		kind, name, err := kindAndName(args, false, false)
		if err != nil {
			return o, err
		}
		o.kind, o.name = kind, name
	}
	return o, nil
}

func newEventsCmd() *cobra.Command {
	var f eventsFlags
	cmd := &cobra.Command{
		Use:   "events [KIND[/NAME]]",
		Short: "List or follow events, as kubectl events does",
		Long: `List the events recorded about resources, aggregated and ordered by when
they were last seen, as kubectl events does; -f follows them live. Filter
by object (KIND or KIND/NAME), namespace, age (--since), reason (--reason
Issued,Failed) and type (--types Warning).`,
		Example: `  acmeq events -A
  acmeq events challenge/example-com-1-944887539-0 -o json
  acmeq events -f -A --reason Issued,Failed`,
		ValidArgsFunction: completeKinds,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options(args)
			if err != nil {
				return usagef(cmd, "%v", err)
			}
			c, err := readConnEnv()
			if err != nil {
				return err
			}
			nc, js, err := connectNATS(c.NATS, "acmeq-events")
			if err != nil {
				return err
			}
			defer nc.Close()
			return printEvents(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), js, o, time.Now)
		},
	}
	f.register(cmd.Flags())
	return cmd
}

// parseEventsArgs parses the arguments of `acmeq events` (flags anywhere).
func parseEventsArgs(args []string) (eventsOptions, error) {
	var f eventsFlags
	fs := pflag.NewFlagSet("events", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return eventsOptions{}, err
	}
	return f.options(fs.Args())
}

// printEvents prints the stored events that match o (see renderEvents);
// with follow, every event as it is read, history first, then live ones
// until ctx ends.
func printEvents(ctx context.Context, out, errOut io.Writer, js jetstream.JetStream, o eventsOptions, now func() time.Time) error {
	ns := o.namespace
	if o.allNamespaces || messages.IsClusterScoped(o.kind) {
		// A ClusterIssuer's events are in no namespace.
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
			if werr != nil || !o.matches(e) {
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
	evs = slices.DeleteFunc(slices.Clone(evs), func(e messages.Event) bool { return !o.matches(e) })
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
