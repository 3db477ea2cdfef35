// Command acmeq is the one binary of acmeq: the worker, the HTTP-01
// responder, the producer CLI (apply, request, create secret), kubectl's
// views (get, describe, events, delete) and, built with -tags dev, the
// all-in-one dev stack and the benchmark.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
