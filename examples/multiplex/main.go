// Command multiplex serves several protocols on one TCP port, the job people
// reach for cmux to do, built on detect.Mux:
//
//   - HTTP/1.1 and HTTP/2 with prior knowledge (h2c), served by net/http;
//   - gRPC (the standard health service and a tiny Echo service), served by
//     grpc-go, told apart from other HTTP/2 by the detector's active gRPC
//     mode;
//   - TLS, terminated here with a certificate (self-signed at start unless
//     -tls-cert/-tls-key are given), after which the decrypted stream is
//     detected again: HTTP/1.1 and HTTP/2 (ALPN http/1.1 or h2) go to the same
//     net/http handler, gRPC to the same grpc-go server, anything else to the
//     echo;
//   - a raw TCP echo for every other connection (unknown first bytes, or
//     silence until the detection timeout).
//
// Usage:
//
//	go run ./examples/multiplex                       # listens on 127.0.0.1:8080
//	go run ./examples/multiplex -addr 127.0.0.1:0     # any free port; the bound address is printed
//
// It stops cleanly on SIGINT or SIGTERM.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/sniffsplice/sniff/examples/internal/cliflag"
)

// config is the program's configuration; parseFlags fills it from the
// command line, tests fill it directly.
type config struct {
	// Addr is the TCP address to listen on ("127.0.0.1:0" picks a free port).
	Addr string
	// DetectTimeout bounds protocol detection; a silent client is handed to
	// the echo after it. 0: the detector's default (10 s).
	DetectTimeout time.Duration
	// EchoIdle closes an echo connection after this long without a byte
	// from the client. 0: never.
	EchoIdle time.Duration
	// ShutdownGrace is how long in-flight HTTP requests and RPCs get to
	// finish on shutdown before their connections are closed.
	ShutdownGrace time.Duration
	// CertFile and KeyFile name a PEM certificate and key for TLS; empty:
	// a self-signed certificate for localhost, 127.0.0.1 and ::1 is made at
	// start.
	CertFile, KeyFile string
	// Quiet turns off the per-connection log lines.
	Quiet bool

	// certificate, when set, is used for TLS instead of CertFile/KeyFile
	// (tests).
	certificate *tls.Certificate
	// ready, when set, is called with the bound address once every server
	// is accepting (tests).
	ready func(net.Addr)
}

// errUsage marks command-line errors (exit status 2).
var errUsage = cliflag.ErrUsage

// parseFlags parses the command line into a config. Errors wrap errUsage or
// are flag.ErrHelp; the flag package's own messages go to stderr.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	cfg := config{}
	fs := flag.NewFlagSet("multiplex", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, printed once by main
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "TCP `address` to listen on (port 0 picks a free one; the bound address is printed)")
	fs.DurationVar(&cfg.DetectTimeout, "detect-timeout", 10*time.Second, "how long to wait for a silent client's first bytes before treating it as raw TCP")
	fs.DurationVar(&cfg.EchoIdle, "echo-idle", 2*time.Minute, "close a raw echo connection idle this long (0: never)")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", 5*time.Second, "time in-flight requests get to finish on shutdown")
	fs.StringVar(&cfg.CertFile, "tls-cert", "", "PEM certificate `file` for TLS (default: self-signed for localhost at start)")
	fs.StringVar(&cfg.KeyFile, "tls-key", "", "PEM private key `file` for TLS")
	fs.BoolVar(&cfg.Quiet, "quiet", false, "do not log each connection")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: multiplex [flags]\n\nServes HTTP/1.1, h2c, gRPC, TLS (detected again inside) and a raw TCP echo on one port.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := cliflag.Parse(fs, args, stderr); err != nil {
		return cfg, err
	}
	if err := cliflag.HostPort("-addr", cfg.Addr); err != nil {
		return cfg, err
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return cfg, fmt.Errorf("%w: -tls-cert and -tls-key go together", errUsage)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"-detect-timeout", cfg.DetectTimeout}, {"-echo-idle", cfg.EchoIdle}, {"-shutdown-grace", cfg.ShutdownGrace}} {
		if d.v < 0 {
			return cfg, fmt.Errorf("%w: %s must not be negative (got %v)", errUsage, d.name, d.v)
		}
	}
	if cfg.DetectTimeout == 0 {
		return cfg, fmt.Errorf("%w: -detect-timeout must be positive", errUsage)
	}
	return cfg, nil
}

func main() { cliflag.Main("multiplex", parseFlags, run) }
