package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
)

// renewOptions are the flags of `acmeq renew`.
type renewOptions struct {
	namespace     string
	allNamespaces bool
	all           bool
	selector      string
}

func newRenewCmd() *cobra.Command {
	var o renewOptions
	cmd := &cobra.Command{
		Use:   "renew [certificate] (NAME... | --all | -l SELECTOR)",
		Short: "Renew certificates now, as cmctl renew (resets the failure back-off)",
		Long: `Mark certificates for renewal now, as cert-manager's cmctl renew: their
Issuing condition becomes True with reason ManuallyTriggered and the workers
issue a new revision at once, whatever the renewal time, the failure
back-off or a revocation say. The back-off starts again from zero.`,
		Example: `  acmeq renew shop
  acmeq renew certificate shop -n tenant-a
  acmeq renew --all -n tenant-a
  acmeq renew -A -l tier=edge`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				if k, err := messages.ParseKind(args[0]); err == nil {
					if k != messages.KindCertificate {
						return usagef(cmd, "only certificates are renewed, not %s", plural(k))
					}
					args = args[1:]
				}
			}
			var sel labels.Selector
			if o.selector != "" {
				s, err := labels.Parse(o.selector)
				if err != nil {
					return usagef(cmd, "-l %q: %v", truncate(o.selector), err)
				}
				sel = s
			}
			switch {
			case len(args) == 0 && !o.all && sel == nil:
				return usagef(cmd, "name a certificate, or select them with --all or -l")
			case len(args) > 0 && (o.all || sel != nil):
				return usagef(cmd, "names cannot be combined with --all or -l")
			case len(args) > 0 && o.allNamespaces:
				return usagef(cmd, "names cannot be combined with -A: give -n")
			}
			if o.namespace == "" {
				o.namespace = producer.DefaultNamespace
			}
			return runRenew(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o, args, sel)
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&o.namespace, "namespace", "n", "", "namespace of the certificates (default \"default\")")
	fs.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "select in every namespace (with --all or -l)")
	fs.BoolVar(&o.all, "all", false, "renew every certificate of the namespace (or of all, with -A)")
	fs.StringVarP(&o.selector, "selector", "l", "", "renew the certificates whose labels match, in Kubernetes' syntax")
	return cmd
}

func runRenew(ctx context.Context, out, errOut io.Writer, o renewOptions, names []string, sel labels.Selector) error {
	p, st, closeFn, err := newProducer(ctx)
	if err != nil {
		return err
	}
	defer closeFn()
	targets := make([][2]string, 0, len(names))
	for _, n := range names {
		targets = append(targets, [2]string{o.namespace, n})
	}
	if len(names) == 0 {
		ns := o.namespace
		if o.allNamespaces {
			ns = ""
		}
		objs, err := st.List(ctx, messages.KindCertificate, ns)
		if err != nil {
			return err
		}
		for _, obj := range objs {
			m := obj.GetMeta()
			if sel == nil || sel.Matches(labels.Set(m.Labels)) {
				targets = append(targets, [2]string{m.Namespace, m.Name})
			}
		}
		if len(targets) == 0 {
			fmt.Fprintln(errOut, "No certificates selected.")
			return nil
		}
	}
	failed := 0
	for _, tg := range targets {
		err := p.Renew(ctx, tg[0], tg[1])
		switch {
		case err == nil:
			fmt.Fprintf(out, "Manually triggered issuance of Certificate %s/%s\n", tg[0], tg[1])
		case errors.Is(err, store.ErrNotFound):
			failed++
			fmt.Fprintf(errOut, "error: certificate %q not found in namespace %q\n", tg[1], tg[0])
		case errors.Is(err, producer.ErrAlreadyRenewing):
			fmt.Fprintf(out, "Certificate %s/%s is already being issued: %v\n", tg[0], tg[1], errors.Unwrap(err))
		default:
			failed++
			fmt.Fprintf(errOut, "error: %v\n", err)
		}
	}
	if failed > 0 {
		return exitError{code: 1, msg: fmt.Sprintf("%d of %d certificates were not renewed", failed, len(targets))}
	}
	return nil
}
