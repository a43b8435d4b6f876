// Command sniproxy routes TLS connections by the server name (SNI) of their
// ClientHello to different backends without terminating TLS: it peeks at the
// ClientHello with detect (nothing is consumed; on Linux the bytes stay in
// the kernel), picks the backend, dials it and joins the two connections
// in a splice.Loop (an event loop: an idle proxied connection holds its two
// sockets and no goroutine), so the client's handshake, certificates and
// all, is with the backend itself.
//
// Routes are exact names or wildcards (*.example.test matches any name below
// example.test); an exact route wins, then the longest wildcard, then the
// -default backend. A connection whose name matches nothing (or that sends no
// SNI) when there is no -default is refused: the proxy answers with a TLS
// alert "unrecognized_name" (112), written raw since it never speaks TLS
// itself, and closes. A backend that cannot be reached gets the client an
// "internal_error" alert (80). Connections that are not TLS, or stay silent
// past -detect-timeout, are closed without a word.
//
// With -metrics ADDRESS it serves Prometheus metrics (package metrics, with
// Linkerd's names): protocol_detect_total and its duration histogram,
// tcp_open_total, tcp_read_bytes_total, tcp_write_bytes_total and
// tcp_close_total{errno} for the proxied connections (tls="opaque": the
// client's own TLS, passed through).
//
// Usage:
//
//	go run ./examples/sniproxy -listen 127.0.0.1:8443 \
//		-route a.test=127.0.0.1:9001 -route '*.example.test=127.0.0.1:9002' \
//		-default 127.0.0.1:9003
//
// On SIGINT or SIGTERM it closes the listener and every proxied connection
// and exits 0.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/sniffsplice/sniff/examples/internal/cliflag"
)

// config is the program's configuration; parseFlags fills it from the
// command line, tests fill it directly.
type config struct {
	// Listen is the TCP address to listen on ("127.0.0.1:0": a free port).
	Listen string
	// Routes map SNI patterns to backends.
	Routes []route
	// Default is the backend for names no route matches ("": refuse them).
	Default string
	// DetectTimeout bounds the wait for a complete ClientHello.
	DetectTimeout time.Duration
	// DialTimeout bounds connecting to a backend.
	DialTimeout time.Duration
	// IdleTimeout closes a proxied connection idle this long (0: never).
	IdleTimeout time.Duration
	// Metrics, when set, is the TCP address of an HTTP listener serving
	// Prometheus metrics at /metrics.
	Metrics string
	// Quiet turns off the per-connection log lines.
	Quiet bool

	// ready, when set, is called with the bound addresses (metrics nil when
	// off) once the proxy accepts connections (tests).
	ready func(listen, metrics net.Addr)
}

// errUsage marks command-line errors (exit status 2).
var errUsage = cliflag.ErrUsage

// routesFlag collects repeated -route flags.
type routesFlag struct{ routes *[]route }

func (f routesFlag) String() string {
	if f.routes == nil {
		return ""
	}
	var parts []string
	for _, r := range *f.routes {
		parts = append(parts, r.Pattern+"="+r.Backend)
	}
	return strings.Join(parts, " ")
}

func (f routesFlag) Set(s string) error {
	r, err := parseRoute(s)
	if err != nil {
		return err
	}
	*f.routes = append(*f.routes, r)
	return nil
}

// parseFlags parses the command line into a config; a bad value is refused
// with an error wrapping errUsage (or flag.ErrHelp for -h).
func parseFlags(args []string, stderr io.Writer) (config, error) {
	cfg := config{}
	fs := flag.NewFlagSet("sniproxy", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, printed once by main
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8443", "TCP `address` to listen on (port 0 picks a free one; the bound address is printed)")
	fs.Var(routesFlag{&cfg.Routes}, "route", "`NAME=HOST:PORT`: send TLS connections for NAME (a host name or *.suffix) to HOST:PORT; repeatable")
	fs.StringVar(&cfg.Default, "default", "", "`HOST:PORT` for names no -route matches and hellos without SNI (default: refuse them)")
	fs.DurationVar(&cfg.DetectTimeout, "detect-timeout", 5*time.Second, "how long to wait for the client's complete ClientHello")
	fs.DurationVar(&cfg.DialTimeout, "dial-timeout", 5*time.Second, "how long to wait for a backend to accept")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 5*time.Minute, "close a proxied connection idle this long (0: never)")
	fs.StringVar(&cfg.Metrics, "metrics", "", "serve Prometheus metrics at http://`ADDRESS`/metrics (default: off)")
	fs.BoolVar(&cfg.Quiet, "quiet", false, "do not log each connection")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: sniproxy -route NAME=HOST:PORT [-route ...] [-default HOST:PORT] [flags]\n\nRoutes TLS connections by SNI without terminating them.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := cliflag.Parse(fs, args, stderr); err != nil {
		return cfg, err
	}
	if err := cliflag.HostPort("-listen", cfg.Listen); err != nil {
		return cfg, err
	}
	if cfg.Metrics != "" {
		if err := cliflag.HostPort("-metrics", cfg.Metrics); err != nil {
			return cfg, err
		}
	}
	if len(cfg.Routes) == 0 && cfg.Default == "" {
		return cfg, fmt.Errorf("%w: no routes: give at least one -route NAME=HOST:PORT or a -default HOST:PORT", errUsage)
	}
	if _, err := newRouter(cfg.Routes, cfg.Default); err != nil {
		return cfg, fmt.Errorf("%w: %v", errUsage, err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		zero bool // 0 allowed
	}{{"-detect-timeout", cfg.DetectTimeout, false}, {"-dial-timeout", cfg.DialTimeout, false}, {"-idle-timeout", cfg.IdleTimeout, true}} {
		if d.v < 0 || d.v == 0 && !d.zero {
			return cfg, fmt.Errorf("%w: %s must be positive (got %v)", errUsage, d.name, d.v)
		}
	}
	return cfg, nil
}

func main() { cliflag.Main("sniproxy", parseFlags, run) }
