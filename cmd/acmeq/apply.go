package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
)

// stringsFlag collects a repeated flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func newProducer(ctx context.Context) (*producer.Client, func(), error) {
	c, err := parseEnv[connEnv]()
	if err != nil {
		return nil, nil, err
	}
	nc, js, st, err := openStore(ctx, c, "acmeq-cli")
	if err != nil {
		return nil, nil, err
	}
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		nc.Close()
		return nil, nil, err
	}
	return producer.New(st, bus.New(js, "acmeq-cli")), nc.Close, nil
}

func runApply(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("apply", flag.ContinueOnError)
	file := fs.String("f", "", "file of resources (YAML, JSON or JSONL); - for standard input")
	if err := fs.Parse(args); err != nil {
		return exitError{code: 2}
	}
	if *file == "" {
		return exitError{code: 2, msg: "apply: -f FILE is required"}
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
	p, closeFn, err := newProducer(ctx)
	if err != nil {
		return err
	}
	defer closeFn()
	dec := producer.NewDecoder(r)
	var errs []error
	for i := 1; ; i++ {
		obj, err := dec.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// A document that does not parse stops the run: later ones may
			// be misaligned.
			errs = append(errs, err)
			break
		}
		res, err := p.Apply(ctx, obj)
		m := obj.GetMeta()
		ref := fmt.Sprintf("%s/%s/%s", strings.ToLower(string(obj.GetKind())), m.Namespace, m.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ref, err))
			continue
		}
		fmt.Printf("%s %s\n", ref, strings.ToLower(string(res)))
	}
	if len(errs) > 0 {
		return exitError{code: 1, msg: errors.Join(errs...).Error()}
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
	p, closeFn, err := newProducer(ctx)
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

var _ = messages.APIVersion
