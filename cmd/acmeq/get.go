package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

// runGet is `acmeq get KIND [NAME] [-n NS] [-A] [-o wide|json|yaml|jsonpath=...] [-w]`.
func runGet(ctx context.Context, args []string) error {
	o, err := parseGetArgs(args)
	if err != nil {
		return err
	}
	nc, _, st, err := openReadStore(ctx, "acmeq-get")
	if err != nil {
		return err
	}
	defer nc.Close()
	return getResources(ctx, os.Stdout, os.Stderr, st, o, time.Now)
}

func parseGetArgs(args []string) (getOptions, error) {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: acmeq get KIND [NAME] [-n NS|-A] [-o wide|json|yaml|jsonpath=TEMPLATE] [-w]")
		fs.PrintDefaults()
	}
	var o getOptions
	var output string
	namespaceFlags(fs, &o.namespace)
	allNamespacesFlags(fs, &o.allNamespaces)
	fs.StringVar(&output, "o", "", "output format: wide, json, yaml or jsonpath=TEMPLATE")
	fs.StringVar(&output, "output", "", "same as -o")
	fs.BoolVar(&o.watch, "w", false, "after listing, print a row for each change until interrupted")
	fs.BoolVar(&o.watch, "watch", false, "same as -w")
	if err := fs.Parse(reorderArgs(fs, args)); err != nil {
		return o, exitError{code: 2}
	}
	kind, name, err := kindAndName(fs.Args(), false)
	if err != nil {
		return o, exitError{code: 2, msg: "get: " + err.Error()}
	}
	o.kind, o.name = kind, name
	if o.output, err = view.ParseOutput(output); err != nil {
		return o, exitError{code: 2, msg: "get: " + err.Error()}
	}
	if o.allNamespaces && o.name != "" {
		return o, exitError{code: 2, msg: "get: a resource cannot be retrieved by name across all namespaces"}
	}
	return o, nil
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
	return renderGet(out, errOut, o, objs, now())
}

// fetchResources reads the named resource, or lists the namespace (every
// namespace with -A), sorted by namespace and name.
func fetchResources(ctx context.Context, st *store.Store, o getOptions) ([]messages.Object, error) {
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

// noResources is kubectl's message for an empty list (on standard error).
func noResources(errOut io.Writer, ns string, all bool) {
	if all {
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
	wide := o.output.Format == view.FormatWide
	var (
		al       view.Aligner
		header   bool
		printed  int
		caughtUp bool
		initial  []messages.Object
	)
	last := map[string]messages.Object{}
	emit := func(objs []messages.Object) error {
		if o.output.Structured() {
			for _, obj := range objs {
				if o.output.Format == view.FormatYAML && printed > 0 {
					fmt.Fprintln(out, "---")
				}
				if err := o.output.Write(out, obj); err != nil {
					return err
				}
				printed++
			}
			return nil
		}
		var rows [][]string
		if !header {
			rows = append(rows, view.Header(o.kind, wide, o.allNamespaces))
			header = true
		}
		for _, obj := range objs {
			rows = append(rows, view.Row(obj, wide, o.allNamespaces, now()))
		}
		_, err := io.WriteString(out, al.Format(rows))
		return err
	}
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
			if err := emit(initial); err != nil {
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
		if err := emit([]messages.Object{obj}); err != nil {
			return err
		}
	}
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

// kindAndName reads "KIND [NAME]" or "KIND/NAME". Secrets are refused:
// their data is sealed and these commands never open it.
func kindAndName(args []string, nameRequired bool) (messages.Kind, string, error) {
	if len(args) == 0 {
		return "", "", errors.New("you must specify the type of resource: issuer, certificate, certificaterequest, order or challenge")
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
	if kind == messages.KindSecret {
		return "", "", errors.New("secrets are not shown: their data is sealed (see the Certificate's status instead)")
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

func namespaceFlags(fs *flag.FlagSet, ns *string) {
	fs.StringVar(ns, "n", "default", "namespace")
	fs.StringVar(ns, "namespace", "default", "same as -n")
}

func allNamespacesFlags(fs *flag.FlagSet, all *bool) {
	fs.BoolVar(all, "A", false, "all namespaces")
	fs.BoolVar(all, "all-namespaces", false, "same as -A")
}

// reorderArgs lets flags follow positional arguments, as kubectl users
// type them (`acmeq get challenges -n default`): the standard flag package
// stops at the first positional argument, so flags (with their values) are
// moved before the positional ones. It also splits kubectl's glued short
// forms, -ojson, -ojsonpath='{...}' and -ndefault, into -o json and so on.
// Everything after "--" stays positional.
func reorderArgs(fs *flag.FlagSet, args []string) []string {
	takesValue := func(name string) bool {
		f := fs.Lookup(name)
		if f == nil {
			return false
		}
		b, ok := f.Value.(interface{ IsBoolFlag() bool })
		return !ok || !b.IsBoolFlag()
	}
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		body := strings.TrimLeft(a, "-")
		name, _, hasValue := strings.Cut(body, "=")
		if !strings.HasPrefix(a, "--") && len(body) > 1 && body[1] != '=' && fs.Lookup(name) == nil && takesValue(body[:1]) {
			flags = append(flags, "-"+body[:1], body[1:])
			continue
		}
		flags = append(flags, a)
		if !hasValue && takesValue(name) && i+1 < len(args) {
			flags = append(flags, args[i+1])
			i++
		}
	}
	return append(flags, pos...)
}

// openReadStore opens the store for commands that only read resources
// (get, describe, delete): they never open a Secret, so without
// ACMEQ_SECRET_KEY a throwaway key does.
func openReadStore(ctx context.Context, name string) (*nats.Conn, jetstream.JetStream, *store.Store, error) {
	c, err := parseEnv[connEnv]()
	if err != nil {
		return nil, nil, nil, err
	}
	if c.SecretKey == "" {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, nil, nil, err
		}
		c.SecretKey = base64.StdEncoding.EncodeToString(key)
	}
	return openStore(ctx, c, name)
}
