// Command dnsd runs the stack's tiny DNS server (stack.StartDNS: every A
// query answered with 127.0.0.1, no AAAA) as a process of its own, so that
// a benchmark can keep its CPU time apart from the client's. It writes the
// address it listens on (UDP and TCP) to the file named by -addr-file and
// serves until SIGTERM or SIGINT.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/acmeq/acmeq/internal/stack"
)

func main() {
	addrFile := flag.String("addr-file", "", "write the host:port the server listens on to this file")
	flag.Parse()
	if *addrFile == "" {
		fmt.Fprintln(os.Stderr, "dnsd: -addr-file is required")
		os.Exit(2)
	}
	d, err := stack.StartDNS(net.IPv4(127, 0, 0, 1))
	if err != nil {
		fmt.Fprintln(os.Stderr, "dnsd:", err)
		os.Exit(1)
	}
	defer d.Close()
	// Write then rename: the reader never sees half an address.
	tmp := *addrFile + ".tmp"
	err = os.WriteFile(tmp, []byte(d.Addr), 0o644)
	if err == nil {
		err = os.Rename(tmp, *addrFile)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dnsd:", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
