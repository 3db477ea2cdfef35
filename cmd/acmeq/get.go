package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/internal/view"
	"github.com/acmeq/acmeq/messages"
)

// getOptions is a parsed `acmeq get`.
type getOptions struct {
	kind          messages.Kind
	name          string
	namespace     string
	allNamespaces bool
	output        view.Output
	watch         bool
}

// getFlags are the flags of `acmeq get`, as kubectl names them.
type getFlags struct {
	namespace     string
	allNamespaces bool
	output        string
	watch         bool
}

func (f *getFlags) register(fs *pflag.FlagSet) {
	namespaceFlag(fs, &f.namespace)
	fs.BoolVarP(&f.allNamespaces, "all-namespaces", "A", false, "list the resources of every namespace")
	fs.StringVarP(&f.output, "output", "o", "", "output format: wide, json, yaml, jsonpath=TEMPLATE or jsonpath-as-json=TEMPLATE")
	fs.BoolVarP(&f.watch, "watch", "w", false, "after listing, print a row for each change until interrupted")
}

// options checks the flags with the positional arguments.
func (f getFlags) options(args []string) (getOptions, error) {
	o := getOptions{namespace: f.namespace, allNamespaces: f.allNamespaces, watch: f.watch}
	kind, name, err := kindAndName(args, false, true)
	if err != nil {
		return o, err
	}
	o.kind, o.name = kind, name
	if messages.IsClusterScoped(kind) {
		// As kubectl: -n and -A mean nothing for a cluster-scoped kind.
		o.namespace, o.allNamespaces = "", false
	}
	if o.output, err = view.ParseOutput(f.output); err != nil {
		return o, err
	}
	if o.allNamespaces && o.name != "" {
		return o, errors.New("a resource cannot be retrieved by name across all namespaces")
	}
	if o.kind == messages.KindSecret && o.watch && o.output.Structured() {
		return o, errors.New("get secrets -w prints the table only: secret data is not streamed")
	}
	return o, nil
}

const getExample = `  acmeq get certificates
  acmeq get challenges -A -o wide
  acmeq get clusterissuers       # cluster-scoped: no namespace
  acmeq get order example-com-1-944887539 -o jsonpath='{.status.authorizations[0].url}'
  acmeq get certificates -w
  acmeq get secret shop -o jsonpath='{.data.tls\.crt}' | base64 -d
  acmeq get secrets              # names, types, key counts: no ACMEQ_SECRET_KEY needed`

func newGetCmd() *cobra.Command {
	var f getFlags
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "Display resources: issuers, clusterissuers, certificates, certificaterequests, orders, challenges, secrets",
		Long: `Display one resource or a list, as kubectl get does: a table (-o wide for
more columns), or the resources as json, yaml or a jsonpath template
(kubectl's jsonpath: {..name}, unions, filters and {range} included).

Secrets: the table (NAME, TYPE, DATA, AGE) reads only their keys; -o
json|yaml|jsonpath opens their data (base64 under .data, as in Kubernetes)
and needs ACMEQ_SECRET_KEY.`,
		Example:           getExample,
		ValidArgsFunction: completeKinds,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options(args)
			if err != nil {
				return usagef(cmd, "%v", err)
			}
			return runGet(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f.register(cmd.Flags())
	return cmd
}

// parseGetArgs parses the arguments of `acmeq get` (flags anywhere).
func parseGetArgs(args []string) (getOptions, error) {
	var f getFlags
	fs := pflag.NewFlagSet("get", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return getOptions{}, err
	}
	return f.options(fs.Args())
}

func runGet(ctx context.Context, out, errOut io.Writer, o getOptions) error {
	c, err := readConnEnv()
	if err != nil {
		return err
	}
	openData := o.kind == messages.KindSecret && o.output.Structured()
	if openData && c.SecretKey == "" {
		return errors.New("get secret: ACMEQ_SECRET_KEY is required to open a Secret's data (-o json, yaml or jsonpath); without it, get secrets lists names, types and key counts")
	}
	nc, _, st, err := openReadStore(ctx, c, "acmeq-get")
	if err != nil {
		return err
	}
	defer nc.Close()
	return getResources(ctx, out, errOut, st, o, time.Now)
}

// getResources prints what `acmeq get` prints, reading from st; now gives
// the time ages are counted to.
func getResources(ctx context.Context, out, errOut io.Writer, st *store.Store, o getOptions, now func() time.Time) error {
	if o.watch {
		return watchResources(ctx, out, errOut, st, o, now)
	}
	objs, err := fetchResources(ctx, st, o)
	if err != nil {
		return notFound(errOut, o.kind, o.name, err)
	}
	if o.kind == messages.KindSecret && o.output.Structured() {
		secrets, err := openSecrets(ctx, st, objs)
		if err != nil {
			return err
		}
		return renderSecrets(out, o, secrets)
	}
	return renderGet(out, errOut, o, objs, now())
}

// openSecrets opens the data of the Secrets listed.
func openSecrets(ctx context.Context, st *store.Store, objs []messages.Object) ([]*view.Secret, error) {
	out := make([]*view.Secret, 0, len(objs))
	for _, obj := range objs {
		m := obj.GetMeta()
		data, err := st.GetSecret(ctx, m.Namespace, m.Name)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted since it was listed
		}
		if err != nil {
			return nil, fmt.Errorf("get secret %s/%s: its data does not open with this ACMEQ_SECRET_KEY (the workers' key is needed): %w", m.Namespace, m.Name, err)
		}
		out = append(out, view.OpenedSecret(*m, data))
	}
	return out, nil
}

// renderSecrets prints opened Secrets as json, yaml or jsonpath: the
// Secret itself when it was named, a List otherwise.
func renderSecrets(out io.Writer, o getOptions, secrets []*view.Secret) error {
	var v any = view.ListOf(secrets)
	if o.name != "" && len(secrets) == 1 {
		v = secrets[0]
	}
	return o.output.Write(out, v)
}

// fetchResources reads the named resource, or lists the namespace (every
// namespace with -A), sorted by namespace and name.
func fetchResources(ctx context.Context, st *store.Store, o getOptions) ([]messages.Object, error) {
	if messages.IsClusterScoped(o.kind) {
		o.namespace, o.allNamespaces = "", false
	}
	if o.name != "" {
		obj, _ := messages.New(o.kind)
		if err := st.Get(ctx, o.namespace, o.name, obj); err != nil {
			return nil, err
		}
		return []messages.Object{obj}, nil
	}
	ns := o.namespace
	if o.allNamespaces {
		ns = ""
	}
	objs, err := st.List(ctx, o.kind, ns)
	if err != nil {
		return nil, err
	}
	// As kubectl: by namespace, then name (the store lists in the order
	// the resources were last written).
	slices.SortFunc(objs, func(a, b messages.Object) int {
		ma, mb := a.GetMeta(), b.GetMeta()
		return cmp.Or(cmp.Compare(ma.Namespace, mb.Namespace), cmp.Compare(ma.Name, mb.Name))
	})
	return objs, nil
}

// renderGet prints objs as o asks: a table, or the resource (a List when
// no name was given) as json, yaml or jsonpath.
func renderGet(out, errOut io.Writer, o getOptions, objs []messages.Object, now time.Time) error {
	if o.output.Structured() {
		var v any = view.ListOf(objs)
		if o.name != "" && len(objs) == 1 {
			v = objs[0]
		}
		return o.output.Write(out, v)
	}
	if len(objs) == 0 {
		noResources(errOut, o.namespace, o.allNamespaces)
		return nil
	}
	_, err := io.WriteString(out, view.Table(o.kind, objs, o.output.Format == view.FormatWide, o.allNamespaces, now))
	return err
}

// noResources is kubectl's message for an empty list (on standard error);
// ns is empty for a cluster-scoped kind.
func noResources(errOut io.Writer, ns string, all bool) {
	if all || ns == "" {
		fmt.Fprintln(errOut, "No resources found")
		return
	}
	fmt.Fprintf(errOut, "No resources found in %s namespace.\n", ns)
}

// watchResources is get -w: the table (or the objects) as they are, then a
// row (or the object) for each change, until ctx ends. A deleted resource
// shows its last state, as kubectl does.
func watchResources(ctx context.Context, out, errOut io.Writer, st *store.Store, o getOptions, now func() time.Time) error {
	filter := messages.Key(o.namespace, "*")
	switch {
	case o.name != "":
		filter = messages.Key(o.namespace, o.name)
	case o.allNamespaces:
		filter = ">"
	}
	w, err := st.KV(o.kind).Watch(ctx, filter)
	if err != nil {
		return fmt.Errorf("get -w: watch %s: %w", o.kind, err)
	}
	defer func() { _ = w.Stop() }()
	p := &watchPrinter{out: out, o: o, now: now}
	var (
		caughtUp bool
		initial  []messages.Object
	)
	last := map[string]messages.Object{}
	for {
		var e jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return nil
		case entry, ok := <-w.Updates():
			if !ok {
				return nil
			}
			e = entry
		}
		if e == nil {
			// Caught up with the current values.
			caughtUp = true
			if len(initial) == 0 && !o.output.Structured() {
				if o.name != "" {
					return notFound(errOut, o.kind, o.name, store.ErrNotFound)
				}
				noResources(errOut, o.namespace, o.allNamespaces)
				continue
			}
			if err := p.emit(initial); err != nil {
				return err
			}
			continue
		}
		var obj messages.Object
		if e.Operation() == jetstream.KeyValuePut {
			obj, err = decodeEntry(o.kind, e)
			if err != nil {
				fmt.Fprintln(errOut, "acmeq:", err)
				continue
			}
			last[e.Key()] = obj
		} else {
			obj = last[e.Key()]
			delete(last, e.Key())
			if obj == nil {
				continue
			}
		}
		if !caughtUp {
			if e.Operation() == jetstream.KeyValuePut {
				initial = append(initial, obj)
			}
			continue
		}
		if err := p.emit([]messages.Object{obj}); err != nil {
			return err
		}
	}
}

// watchPrinter prints what get -w sees: each object in the structured
// output format asked for, else table rows aligned as they come, under one
// header.
type watchPrinter struct {
	out     io.Writer
	o       getOptions
	now     func() time.Time
	al      view.Aligner
	header  bool
	printed int
}

// emit prints objs.
func (p *watchPrinter) emit(objs []messages.Object) error {
	o := p.o
	if o.output.Structured() {
		for _, obj := range objs {
			if o.output.Format == view.FormatYAML && p.printed > 0 {
				fmt.Fprintln(p.out, "---")
			}
			if err := o.output.Write(p.out, obj); err != nil {
				return err
			}
			p.printed++
		}
		return nil
	}
	wide := o.output.Format == view.FormatWide
	var rows [][]string
	if !p.header {
		rows = append(rows, view.Header(o.kind, wide, o.allNamespaces))
		p.header = true
	}
	for _, obj := range objs {
		rows = append(rows, view.Row(obj, wide, o.allNamespaces, p.now()))
	}
	_, err := io.WriteString(p.out, p.al.Format(rows))
	return err
}

func decodeEntry(kind messages.Kind, e jetstream.KeyValueEntry) (messages.Object, error) {
	obj, _ := messages.New(kind)
	if err := json.Unmarshal(e.Value(), obj); err != nil {
		return nil, fmt.Errorf("decode %s %s: %w", kind, e.Key(), err)
	}
	obj.GetMeta().ResourceVersion = e.Revision()
	return obj, nil
}

// notFound prints kubectl's NotFound line for a missing resource and
// returns exit status 1; other errors are returned as they are.
func notFound(errOut io.Writer, kind messages.Kind, name string, err error) error {
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	fmt.Fprintf(errOut, "Error from server (NotFound): %s %q not found\n", plural(kind), name)
	return exitError{code: 1}
}

// plural is the resource's plural, as kubectl names it: "orders".
func plural(k messages.Kind) string { return k.Token() + "s" }

// kindAndName reads "KIND [NAME]" or "KIND/NAME". Secrets are refused
// unless allowSecret: only get shows them.
func kindAndName(args []string, nameRequired, allowSecret bool) (messages.Kind, string, error) {
	if len(args) == 0 {
		return "", "", errors.New("you must specify the type of resource: issuer, clusterissuer, certificate, certificaterequest, order, challenge or secret")
	}
	first, name, slash := strings.Cut(args[0], "/")
	rest := args[1:]
	if !slash && len(rest) > 0 {
		name, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		return "", "", fmt.Errorf("unexpected arguments %q", rest)
	}
	kind, err := messages.ParseKind(first)
	if err != nil {
		return "", "", err
	}
	if kind == messages.KindSecret && !allowSecret {
		return "", "", errors.New("secrets are shown by acmeq get secret NAME only")
	}
	if nameRequired && name == "" {
		return "", "", fmt.Errorf("a %s name is required", kind.Token())
	}
	if name != "" {
		if err := messages.ValidateObjectName("name", name); err != nil {
			return "", "", err
		}
	}
	return kind, name, nil
}

func namespaceFlag(fs *pflag.FlagSet, ns *string) {
	fs.StringVarP(ns, "namespace", "n", "default", "namespace")
}

// completeKinds completes the KIND argument of get, describe, events and
// delete.
func completeKinds(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return []string{"issuers", "clusterissuers", "certificates", "certificaterequests", "orders", "challenges", "secrets"}, cobra.ShellCompDirectiveNoFileComp
}

// openReadStore opens the store for commands that read resources (get,
// describe, delete): they open no Secret's data (get secret -o yaml
// checks for the key first), so without ACMEQ_SECRET_KEY a throwaway key
// does.
func openReadStore(ctx context.Context, c connEnv, name string) (*nats.Conn, jetstream.JetStream, *store.Store, error) {
	if c.SecretKey == "" {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, nil, nil, err
		}
		c.SecretKey = base64.StdEncoding.EncodeToString(key)
	}
	return openStore(ctx, c, name)
}
