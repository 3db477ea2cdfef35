// Command acmeq is the one binary of acmeq: the worker, the HTTP-01
// responder, the producer CLI and the all-in-one dev stack.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `acmeq: cert-manager's ACME machinery on a message queue

Usage:
  acmeq dev [--certificates N --out DIR]   run the whole stack in one process
  acmeq worker                             run a worker (configured by ACMEQ_* env)
  acmeq http01                             run the HTTP-01 responder
  acmeq apply -f FILE                      create or update Issuers and Certificates
  acmeq request --issuer I --name N --dns NAME [--dns NAME ...]
                                           request a certificate

  acmeq get KIND [NAME] [-n NS|-A] [-o wide|json|yaml|jsonpath=...] [-w]
  acmeq describe KIND NAME [-n NS]         a resource, its status and its events
  acmeq events [KIND/NAME] [-n NS] [-f] [--since 10m] [-o json]
  acmeq create secret NAME --from-literal=KEY=VALUE   a sealed Secret (e.g. a TSIG key)
  acmeq delete order|certificate NAME      retry an order / stop managing a certificate
  acmeq bench                              issuance throughput against a bare ACME client

Configuration is read from the environment; see README.md.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "dev":
		err = runDev(ctx, args)
	case "worker":
		err = runWorker(ctx, args)
	case "http01":
		err = runHTTP01(ctx, args)
	case "apply":
		err = runApply(ctx, args)
	case "request":
		err = runRequest(ctx, args)
	case "get":
		err = runGet(ctx, args)
	case "describe":
		err = runDescribe(ctx, args)
	case "events":
		err = runEvents(ctx, args)
	case "create":
		err = runCreate(ctx, args)
	case "delete":
		err = runDelete(ctx, args)
	case "bench":
		err = runBench(ctx, args)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "acmeq: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(os.Stderr, "acmeq:", ee.msg)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "acmeq:", err)
		os.Exit(1)
	}
}

// exitError carries an exit code.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }
