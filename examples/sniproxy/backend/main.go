// Command backend is a throw-away HTTPS server for trying sniproxy by hand:
// it serves a self-signed certificate for the names it is given and answers
// every request with one line naming itself and the SNI it received, so you
// can see which backend a connection reached through the proxy.
//
//	go run ./examples/sniproxy/backend -name a -listen 127.0.0.1:9001 -host a.test
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sniffsplice/sniff/examples/internal/selfsigned"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(2)
	}
}

type hostsFlag []string

func (h *hostsFlag) String() string     { return strings.Join(*h, ",") }
func (h *hostsFlag) Set(s string) error { *h = append(*h, s); return nil }

// run parses args, serves HTTPS until ctx ends and calls ready (when set)
// with the bound address.
func run(ctx context.Context, args []string, stdout io.Writer, ready func(net.Addr)) error {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	name := fs.String("name", "", "this backend's name, shown in every answer and as the certificate's CN (required)")
	listen := fs.String("listen", "127.0.0.1:0", "TCP `address` to listen on")
	var hosts hostsFlag
	fs.Var(&hosts, "host", "a DNS `name` (or *.suffix) for the certificate; repeatable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("-name is required")
	}
	cert, err := selfsigned.New("backend-"+*name, hosts...)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "backend %s: %s %s over %s, sni=%s\n", *name, r.Method, r.URL.Path, r.Proto, r.TLS.ServerName)
		}),
	}
	fmt.Fprintf(stdout, "backend %s: listening on %s (certificate CN=backend-%s, names %v)\n", *name, ln.Addr(), *name, hosts)
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
		<-errc
		return nil
	}
}
