package main

import (
	"context"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/internal/view"
	"github.com/acmeq/acmeq/messages"
)

func newDescribeCmd() *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   "describe KIND [NAME]",
		Short: "Show a resource, its status and its events, as kubectl describe does",
		Long: `Show a resource, its status and its events (aggregated, "(x3 over 106s)"),
as kubectl describe shows a cert-manager resource. Without a name, every
resource of the kind in the namespace. Text from users and CAs is escaped
("\n", "\x1b"): it cannot add lines.`,
		Example: `  acmeq describe certificate shop
  acmeq describe clusterissuer letsencrypt
  acmeq describe challenge example-com-1-944887539-0 -n shop`,
		ValidArgsFunction: completeKinds,
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, err := kindAndName(args, false, false)
			if err != nil {
				return usagef(cmd, "%v", err)
			}
			if messages.IsClusterScoped(kind) {
				ns = "" // a ClusterIssuer has no namespace: -n means nothing
			}
			c, err := readConnEnv()
			if err != nil {
				return err
			}
			nc, js, st, err := openReadStore(cmd.Context(), c, "acmeq-describe")
			if err != nil {
				return err
			}
			defer nc.Close()
			return describeResources(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), st, js, kind, ns, name, time.Now())
		},
	}
	namespaceFlag(cmd.Flags(), &ns)
	return cmd
}

// described is a resource with its events, and the sections describe
// shows of what lives outside it (an Issuer's rate-limit budgets).
type described struct {
	obj      messages.Object
	events   []messages.Event
	sections []view.Section
}

// describeResources prints the named resource (every resource of kind in
// ns when name is empty) with its events.
func describeResources(ctx context.Context, out, errOut io.Writer, st *store.Store, js jetstream.JetStream, kind messages.Kind, ns, name string, now time.Time) error {
	if messages.IsClusterScoped(kind) {
		ns = ""
	}
	items, err := collectDescribed(ctx, st, js, kind, ns, name)
	if err != nil {
		return notFound(errOut, kind, name, err)
	}
	if len(items) == 0 {
		noResources(errOut, ns, false)
		return nil
	}
	if kind == messages.KindIssuer || kind == messages.KindClusterIssuer {
		objs := make([]messages.Object, len(items))
		for i := range items {
			objs[i] = items[i].obj
		}
		secs := budgetSections(ctx, objs, now)
		for i := range items {
			if sec, ok := secs[items[i].obj]; ok {
				items[i].sections = append(items[i].sections, sec)
			}
		}
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
		if _, err := io.WriteString(out, sep+view.Describe(it.obj, it.events, now, it.sections...)); err != nil {
			return err
		}
	}
	return nil
}
