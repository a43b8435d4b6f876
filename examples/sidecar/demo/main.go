// Command demo runs the sniff mesh on loopback: backends that speak HTTP/1,
// h2c, gRPC, a server-speaks-first protocol (SMTP-style), a Redis-style
// protocol on a port declared opaque and a Memcache-style client that stays
// silent before its first request; two sidecars (the same code as the
// examples/sidecar binary) with a throw-away SPIFFE CA; one client per
// backend through client -> sidecar A -> mutual TLS -> sidecar B -> backend.
//
// It prints one row per backend (protocol, path, bytes each way, time to first
// byte, the peer identity sidecar B saw, the data checked) and exits 0 only if
// every row is correct.
//
//	go run ./examples/sidecar/demo
//	go run ./examples/sidecar/demo -no-race   # Linkerd's behaviour: SMTP waits 10 s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"
)

func main() {
	var o options
	flag.DurationVar(&o.DetectTimeout, "detect-timeout", 10*time.Second, "protocol detection timeout (Linkerd's default is 10s)")
	flag.BoolVar(&o.NoRace, "no-race", false, "turn off server-first racing (then a server-speaks-first backend waits for the detection timeout)")
	flag.DurationVar(&o.Silence, "silence", time.Second, "how long the Memcache-style client stays silent before its first request")
	flag.BoolVar(&o.Verbose, "v", false, "print every sidecar event")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "demo: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rows, err := run(ctx, os.Stdout, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	for _, r := range rows {
		if r.Err != nil {
			os.Exit(1)
		}
	}
}
