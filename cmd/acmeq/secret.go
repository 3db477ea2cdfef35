package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
)

// runCreate: `acmeq create secret NAME [-n NS] --from-literal=k=v --from-file=k=path`.
func runCreate(ctx context.Context, args []string) error {
	if len(args) < 2 || args[0] != "secret" {
		return exitError{code: 2, msg: "usage: acmeq create secret NAME [-n NS] --from-literal=KEY=VALUE [--from-file=KEY=PATH ...]"}
	}
	name := args[1]
	fs := flag.NewFlagSet("create secret", flag.ContinueOnError)
	ns := fs.String("n", "default", "namespace")
	var literals, files stringsFlag
	fs.Var(&literals, "from-literal", "KEY=VALUE (repeatable)")
	fs.Var(&files, "from-file", "KEY=PATH (repeatable)")
	if err := fs.Parse(args[2:]); err != nil {
		return exitError{code: 2}
	}
	data := map[string][]byte{}
	for _, l := range literals {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return exitError{code: 2, msg: fmt.Sprintf("--from-literal %q: want KEY=VALUE", l)}
		}
		data[k] = []byte(v)
	}
	for _, f := range files {
		k, path, ok := strings.Cut(f, "=")
		if !ok {
			return exitError{code: 2, msg: fmt.Sprintf("--from-file %q: want KEY=PATH", f)}
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		data[k] = b
	}
	p, _, closeFn, err := newProducer(ctx)
	if err != nil {
		return err
	}
	defer closeFn()
	if err := p.PutSecret(ctx, *ns, name, data); err != nil {
		return err
	}
	fmt.Printf("secret/%s/%s created (sealed with ACMEQ_SECRET_KEY)\n", *ns, name)
	return nil
}
