// Command sidecar is a mesh sidecar proxy built from the sniff packages, the
// way Linkerd's proxy runs beside an application:
//
//   - an outbound listener (like 4140) takes the application's outgoing
//     connections, learns each one's original destination (SO_ORIGINAL_DST
//     behind iptables REDIRECT rules, or -forward for explicit listeners),
//     resolves the port's policy (skip / opaque / declared / detect, with
//     server-first racing) and carries the bytes to the peer sidecar's
//     inbound port inside mutual TLS, with a transport header naming the
//     real port;
//   - an inbound listener (like 4143) terminates mutual TLS, checks the
//     peer's SPIFFE identity, reads the transport header and forwards to the
//     local application port (unmeshed clients redirected by iptables get the
//     local port policy and detection);
//   - an admin listener (like 4191) serves /metrics (Prometheus), /ready and
//     /live.
//
// Policy comes from flags and from a file of Kubernetes-style annotations
// with Linkerd's keys (-policy). Bad flags or files are refused at start.
//
//	go run ./examples/sidecar -h
//	go run ./examples/sidecar/proxy-init -h    # the iptables rules for transparent mode
//	go run ./examples/sidecar/demo             # two sidecars on loopback, checked
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sniffsplice/sniff/examples/internal/memreturn"
	"github.com/sniffsplice/sniff/examples/sidecar/proxy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "sidecar:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "sidecar:", err)
		os.Exit(1)
	}
}

// run parses args, starts the sidecar, calls started (when set) and serves
// until ctx ends (SIGINT, SIGTERM); then it drains: the listeners stop
// accepting and open connections get -drain-grace to finish.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, started func(*proxy.Sidecar)) error {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	s, err := proxy.Start(context.Background(), cfg.proxy, cfg.listeners)
	if err != nil {
		return err
	}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), cfg.drain)
			defer cancel()
			s.Shutdown(dctx)
		case <-stopped:
		}
	}()
	// After a spike of connections, hand the memory back instead of keeping it resident.
	mctx, stopMem := context.WithCancel(context.Background())
	defer stopMem()
	go memreturn.Run(mctx, 5*time.Second)
	for _, w := range cfg.warnings {
		fmt.Fprintln(stderr, "sidecar: warning:", w)
	}
	fmt.Fprintf(stdout, "sidecar %s listening:", cfg.id)
	for _, a := range []struct {
		name string
		addr net.Addr
	}{{"outbound", s.OutboundAddr}, {"inbound", s.InboundAddr}, {"admin", s.AdminAddr}} {
		if a.addr != nil {
			fmt.Fprintf(stdout, " %s=%s", a.name, a.addr)
		}
	}
	for i, a := range s.ForwardAddrs {
		fmt.Fprintf(stdout, " forward=%s->%s", a, cfg.listeners.Forwards[i].Dst)
	}
	fmt.Fprintln(stdout)
	if started != nil {
		started(s)
	}
	return s.Wait()
}
