package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/internal/view"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
)

// Defaults of apply's flags.
const (
	applyParallelDefault = 32
	applyTimeoutDefault  = 30 * time.Minute
	// maxDecodeErrorsPerInput stops reading an input after this many
	// invalid documents: a broken stream cannot make apply collect errors
	// for ever.
	maxDecodeErrorsPerInput = 100
)

// manifestExtensions are the files apply -f DIR reads, as kubectl reads
// .json, .yaml and .yml (and JSON Lines, which acmeq accepts too).
var manifestExtensions = []string{".json", ".jsonl", ".yaml", ".yml"}

// newProducer connects to NATS (ACMEQ_NATS_URL) and returns a producer
// whose store seals with ACMEQ_SECRET_KEY, and the function that closes
// the connection.
func newProducer(ctx context.Context) (*producer.Client, *store.Store, func(), error) {
	c, err := readConnEnv()
	if err != nil {
		return nil, nil, nil, err
	}
	nc, js, st, err := openStore(ctx, c, "acmeq-cli")
	if err != nil {
		return nil, nil, nil, err
	}
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	return producer.New(st, bus.New(js, "acmeq-cli")), st, nc.Close, nil
}

// applyOptions are the flags of `acmeq apply`.
type applyOptions struct {
	files     []string
	recursive bool
	wait      bool
	timeout   time.Duration
	quiet     bool
	parallel  int
}

func newApplyCmd() *cobra.Command {
	o := applyOptions{}
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update Issuers and Certificates from YAML, JSON or JSON Lines",
		Long: `Create or update Issuers and Certificates (acmeq.io/v1 or cert-manager.io/v1
manifests) from files, directories or standard input, as kubectl apply -f
does. A directory is read for its .yaml, .yml, .json and .jsonl files (in
name order; -R descends into subdirectories). Resources are applied in
parallel; --wait follows the Certificates until Ready or failed. Input
without any resource is an error ("no objects passed to apply").`,
		Example: `  acmeq apply -f certificates.yaml
  acmeq apply -f manifests/ -R --wait
  generate-certificates | acmeq apply -f - -q`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(o.files) == 0 {
				return usagef(cmd, "-f is required: a file, a directory, or - for standard input")
			}
			if o.parallel < 1 {
				return usagef(cmd, "--parallel must be at least 1, got %d", o.parallel)
			}
			if o.timeout <= 0 {
				return usagef(cmd, "--timeout must be positive, got %s", o.timeout)
			}
			return runApply(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVarP(&o.files, "filename", "f", nil, "file or directory of resources (YAML, JSON or JSON Lines), - for standard input; repeatable")
	fs.BoolVarP(&o.recursive, "recursive", "R", false, "read the directories given with -f recursively")
	fs.BoolVar(&o.wait, "wait", false, "follow the applied Certificates until Ready or failed, then print a summary")
	fs.DurationVar(&o.timeout, "timeout", applyTimeoutDefault, "with --wait, give up after this long")
	fs.BoolVarP(&o.quiet, "quiet", "q", false, "do not print a line per resource")
	fs.IntVar(&o.parallel, "parallel", applyParallelDefault, "resources applied at once")
	return cmd
}

// applyInputs expands -f values into the inputs to read: "-" (standard
// input), files, and the manifest files of directories in name order.
// A path that does not exist is kubectl's `the path "x" does not exist`.
func applyInputs(args []string, recursive bool) ([]string, error) {
	var out []string
	for _, a := range args {
		if a == "-" {
			out = append(out, a)
			continue
		}
		st, err := os.Stat(a)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("the path %q does not exist", a)
		}
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		err = filepath.WalkDir(a, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != a && !recursive {
					return filepath.SkipDir
				}
				return nil
			}
			if slices.Contains(manifestExtensions, strings.ToLower(filepath.Ext(path))) {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// applied is what the applies have done so far.
type applied struct {
	mu     sync.Mutex
	errs   []error
	certs  [][2]string
	counts map[producer.Result]int
	objs   int // decoded resources
}

// record counts one apply's result, and prints its line when perLine.
func (res *applied) record(obj messages.Object, r producer.Result, err error, stdout io.Writer, perLine bool, prog *progress) {
	m := obj.GetMeta()
	ref := fmt.Sprintf("%s/%s/%s", strings.ToLower(string(obj.GetKind())), m.Namespace, m.Name)
	if messages.IsClusterScoped(obj.GetKind()) {
		// No namespace: one given is ignored, as Kubernetes does.
		ref = strings.ToLower(string(obj.GetKind())) + "/" + m.Name
	}
	res.mu.Lock()
	defer res.mu.Unlock()
	if err != nil {
		res.errs = append(res.errs, fmt.Errorf("%s: %w", ref, err))
		prog.update(res.counts, len(res.errs))
		return
	}
	res.counts[r]++
	if obj.GetKind() == messages.KindCertificate {
		res.certs = append(res.certs, [2]string{m.Namespace, m.Name})
	}
	if perLine {
		fmt.Fprintf(stdout, "%s %s\n", ref, r)
	}
	prog.update(res.counts, len(res.errs))
}

func runApply(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, o applyOptions) error {
	inputs, err := applyInputs(o.files, o.recursive)
	if err != nil {
		return err
	}
	// NATS is reached when the first resource is decoded: input without
	// any is refused as kubectl refuses it, without a connection.
	var (
		p       *producer.Client
		st      *store.Store
		closeFn = func() {}
	)
	defer func() { closeFn() }()
	prog := newProgress(stderr)
	// Many resources: no line each unless asked; the progress says enough.
	perLine := !o.quiet && !prog.tty
	res := &applied{counts: map[producer.Result]int{}}
	var wg sync.WaitGroup
	sem := make(chan struct{}, o.parallel)
	// Applies run in parallel: each is a few round trips to NATS, and a
	// bulk file of 100k lines should take seconds, not minutes.
	apply := func(obj messages.Object) error {
		if p == nil {
			np, nst, nclose, err := newProducer(ctx)
			if err != nil {
				return err
			}
			p, st, closeFn = np, nst, nclose
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			r, err := p.Apply(ctx, obj)
			res.record(obj, r, err, stdout, perLine, prog)
		}()
		return nil
	}
	var fatal error
	for _, in := range inputs {
		if ctx.Err() != nil {
			break
		}
		if fatal = decodeInput(in, stdin, res, prog, apply); fatal != nil {
			break
		}
	}
	wg.Wait()
	if fatal != nil {
		return fatal
	}
	prog.done(res.counts, len(res.errs))
	for _, e := range res.errs {
		fmt.Fprintln(stderr, "error:", e)
	}
	if res.objs == 0 && len(res.errs) == 0 {
		fmt.Fprintln(stderr, "error: no objects passed to apply")
		return exitError{code: 1}
	}
	if o.wait && len(res.certs) > 0 {
		if err := waitAndSummarize(ctx, stdout, stderr, st, res.certs, o.timeout); err != nil {
			return err
		}
	}
	if len(res.errs) > 0 {
		n := res.counts[producer.Created] + res.counts[producer.Configured] + res.counts[producer.Unchanged]
		return exitError{code: 1, msg: fmt.Sprintf("%d of %d resources were not applied", len(res.errs), len(res.errs)+n)}
	}
	return nil
}

// decodeInput reads one input and hands each resource to apply. Invalid
// documents are recorded in res, and after maxDecodeErrorsPerInput of
// them the input is given up. An error is returned only when apply fails
// (NATS cannot be reached): that stops everything.
func decodeInput(in string, stdin io.Reader, res *applied, prog *progress, apply func(messages.Object) error) error {
	record := func(err error) {
		res.mu.Lock()
		defer res.mu.Unlock()
		res.errs = append(res.errs, err)
		prog.update(res.counts, len(res.errs))
	}
	r, name := stdin, "standard input"
	if in != "-" {
		f, err := os.Open(in)
		if err != nil {
			record(err)
			return nil
		}
		defer f.Close()
		r, name = f, in
	}
	dec := producer.NewDecoder(r)
	for bad := 0; ; {
		obj, err := dec.Next()
		if errors.Is(err, io.EOF) || errors.Is(err, producer.ErrNoObjects) {
			// An empty input adds nothing; only when every input is
			// empty is it kubectl's "no objects passed to apply".
			return nil
		}
		if err != nil {
			record(fmt.Errorf("%s: %w", name, err))
			if bad++; bad == maxDecodeErrorsPerInput {
				record(fmt.Errorf("%s: stopped reading after %d invalid documents", name, bad))
				return nil
			}
			continue
		}
		res.mu.Lock()
		res.objs++
		res.mu.Unlock()
		if err := apply(obj); err != nil {
			return err
		}
	}
}

// waitAndSummarize follows certs to Ready or failure with a progress line,
// then prints a summary table; it fails if any did not become Ready.
func waitAndSummarize(ctx context.Context, stdout, stderr io.Writer, st *store.Store, certs [][2]string, timeout time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	prog := newProgress(stderr)
	start := time.Now()
	ready, failed := 0, 0
	res, werr := producer.WaitCertificates(wctx, st, certs, func(done, total int, o producer.Outcome) {
		if o.Ready {
			ready++
		} else {
			failed++
		}
		prog.line(fmt.Sprintf("waiting: %d/%d done (%d ready, %d failed)", done, total, ready, failed), done == total)
	})
	prog.finish()
	took := time.Since(start)
	tw := tabwriter.NewWriter(stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tREADY\tREASON")
	pending := 0
	for _, k := range certs {
		o, ok := res[k]
		switch {
		case !ok:
			pending++
			fmt.Fprintf(tw, "%s\t%s\tFalse\t%s\n", k[0], k[1], "still pending when the wait ended")
		case !o.Ready:
			fmt.Fprintf(tw, "%s\t%s\tFalse\t%s\n", k[0], k[1], view.Escape(o.Reason))
		}
	}
	if ready < len(certs) {
		_ = tw.Flush()
	}
	fmt.Fprintf(stdout, "%d certificates: %d ready, %d failed, %d pending after %s (%.1f/s)\n", len(certs), ready, failed, pending, took.Round(time.Millisecond), float64(ready)/took.Seconds())
	if werr != nil || ready < len(certs) {
		return exitError{code: 1}
	}
	return nil
}

func newRequestCmd() *cobra.Command {
	var o producer.RequestOptions
	cmd := &cobra.Command{
		Use:   "request --issuer ISSUER --name NAME --dns NAME [--dns NAME ...]",
		Short: "Request a certificate (create or update a Certificate)",
		Example: `  acmeq request --issuer dev --name shop --dns shop.example.test --dns www.shop.example.test
  acmeq request -n tenant-a --issuer letsencrypt --name wc --dns '*.example.com' --key-algorithm RSA --key-size 3072
  acmeq request -n tenant-b --issuer-kind ClusterIssuer --issuer letsencrypt --name api --dns api.example.org`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, _, closeFn, err := newProducer(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			res, err := p.Request(cmd.Context(), o)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "certificate/%s/%s %s\n", o.Namespace, o.Name, strings.ToLower(string(res)))
			return nil
		},
	}
	fs := cmd.Flags()
	namespaceFlag(fs, &o.Namespace)
	fs.StringVar(&o.Name, "name", "", "certificate name")
	fs.StringVar(&o.Issuer, "issuer", "", "issuer name")
	fs.StringVar(&o.IssuerKind, "issuer-kind", "", "Issuer (the default: in the certificate's namespace) or ClusterIssuer")
	fs.StringSliceVar(&o.DNSNames, "dns", nil, "DNS name (repeat or comma-separate for more)")
	fs.StringVar(&o.CommonName, "common-name", "", "optional common name (one of the DNS names)")
	fs.StringVar(&o.KeyAlgorithm, "key-algorithm", "", "ECDSA (default) or RSA")
	fs.IntVar(&o.KeySize, "key-size", 0, "256/384 for ECDSA, 2048/3072/4096 for RSA")
	fs.StringVar(&o.SecretName, "secret-name", "", "secret to write (default: the certificate name)")
	return cmd
}
