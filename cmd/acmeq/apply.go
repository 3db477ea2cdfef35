package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
)

// stringsFlag collects a repeated flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func newProducer(ctx context.Context) (*producer.Client, *store.Store, func(), error) {
	c, err := parseEnv[connEnv]()
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

func runApply(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("apply", flag.ContinueOnError)
	file := fs.String("f", "", "file of resources (YAML, JSON or JSONL); - for standard input")
	wait := fs.Bool("wait", false, "follow the applied Certificates until Ready or failed, then print a summary")
	timeout := fs.Duration("timeout", 30*time.Minute, "with --wait, give up after this long")
	quiet := fs.Bool("q", false, "do not print a line per resource")
	parallel := fs.Int("parallel", 32, "resources applied at once")
	if err := fs.Parse(args); err != nil {
		return exitError{code: 2}
	}
	if *file == "" {
		return exitError{code: 2, msg: "apply: -f FILE is required"}
	}
	if *parallel < 1 {
		return exitError{code: 2, msg: "apply: --parallel must be at least 1"}
	}
	var r io.Reader = os.Stdin
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	p, st, closeFn, err := newProducer(ctx)
	if err != nil {
		return err
	}
	defer closeFn()
	prog := newProgress(os.Stderr)
	// Many resources: no line each unless asked; the progress says enough.
	perLine := !*quiet
	dec := producer.NewDecoder(r)
	var (
		mu     sync.Mutex
		errs   []error
		certs  [][2]string
		counts = map[producer.Result]int{}
		wg     sync.WaitGroup
		sem    = make(chan struct{}, *parallel)
	)
	// Applies run in parallel: each is a few round trips to NATS, and a
	// bulk file of 100k lines should take seconds, not minutes.
	for ctx.Err() == nil {
		obj, err := dec.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			prog.update(counts, len(errs))
			mu.Unlock()
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			res, err := p.Apply(ctx, obj)
			m := obj.GetMeta()
			ref := fmt.Sprintf("%s/%s/%s", strings.ToLower(string(obj.GetKind())), m.Namespace, m.Name)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", ref, err))
				prog.update(counts, len(errs))
				return
			}
			counts[res]++
			if obj.GetKind() == messages.KindCertificate {
				certs = append(certs, [2]string{m.Namespace, m.Name})
			}
			if perLine && !prog.tty {
				fmt.Printf("%s %s\n", ref, res)
			}
			prog.update(counts, len(errs))
		}()
	}
	wg.Wait()
	prog.done(counts, len(errs))
	for _, e := range errs {
		fmt.Fprintln(os.Stderr, "error:", e)
	}
	if *wait && len(certs) > 0 {
		if err := waitAndSummarize(ctx, st, certs, *timeout); err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		return exitError{code: 1, msg: fmt.Sprintf("%d of %d resources were not applied", len(errs), len(errs)+counts[producer.Created]+counts[producer.Configured]+counts[producer.Unchanged])}
	}
	return nil
}

// waitAndSummarize follows certs to Ready or failure with a progress line,
// then prints a summary table; it fails if any did not become Ready.
func waitAndSummarize(ctx context.Context, st *store.Store, certs [][2]string, timeout time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	prog := newProgress(os.Stderr)
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
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tREADY\tREASON")
	pending := 0
	for _, k := range certs {
		o, ok := res[k]
		switch {
		case !ok:
			pending++
			fmt.Fprintf(tw, "%s\t%s\tFalse\t%s\n", k[0], k[1], "still pending when the wait ended")
		case !o.Ready:
			fmt.Fprintf(tw, "%s\t%s\tFalse\t%s\n", k[0], k[1], o.Reason)
		}
	}
	if ready < len(certs) {
		_ = tw.Flush()
	}
	fmt.Printf("%d certificates: %d ready, %d failed, %d pending after %s (%.1f/s)\n", len(certs), ready, failed, pending, took.Round(time.Millisecond), float64(ready)/took.Seconds())
	if werr != nil || ready < len(certs) {
		return exitError{code: 1}
	}
	return nil
}

func runRequest(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("request", flag.ContinueOnError)
	var o producer.RequestOptions
	var dns stringsFlag
	fs.StringVar(&o.Namespace, "n", "default", "namespace")
	fs.StringVar(&o.Name, "name", "", "certificate name")
	fs.StringVar(&o.Issuer, "issuer", "", "issuer name")
	fs.Var(&dns, "dns", "DNS name (repeat for more)")
	fs.StringVar(&o.CommonName, "common-name", "", "optional common name (one of the DNS names)")
	fs.StringVar(&o.KeyAlgorithm, "key-algorithm", "", "ECDSA (default) or RSA")
	fs.IntVar(&o.KeySize, "key-size", 0, "256/384 for ECDSA, 2048/3072/4096 for RSA")
	fs.StringVar(&o.SecretName, "secret-name", "", "secret to write (default: the certificate name)")
	if err := fs.Parse(args); err != nil {
		return exitError{code: 2}
	}
	o.DNSNames = dns
	p, _, closeFn, err := newProducer(ctx)
	if err != nil {
		return err
	}
	defer closeFn()
	res, err := p.Request(ctx, o)
	if err != nil {
		return err
	}
	fmt.Printf("certificate/%s/%s %s\n", o.Namespace, o.Name, strings.ToLower(string(res)))
	return nil
}
