package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sniffsplice/sniff/accept"
	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/examples/internal/lines"
	"github.com/sniffsplice/sniff/examples/internal/memreturn"
	"github.com/sniffsplice/sniff/examples/internal/promtext"
	"github.com/sniffsplice/sniff/examples/internal/selfsigned"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/opaque"
)

// tlsHandshakeTimeout bounds a TLS handshake on the multiplexed port.
const tlsHandshakeTimeout = 10 * time.Second

// run serves cfg.Addr until ctx ends, then shuts every server down and
// returns nil; it returns an error when it cannot start or a server fails.
// It writes its address and, unless cfg.Quiet, one line per connection to
// stdout.
func run(ctx context.Context, cfg config, stdout io.Writer) error {
	out := &lines.Writer{Prefix: "multiplex: ", W: stdout}

	cert, certDesc, err := loadCertificate(cfg)
	if err != nil {
		return err
	}
	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
		MinVersion:   tls.VersionTLS12,
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	// Everything is counted in reg and served at /metrics on the port itself.
	reg := metrics.New(metrics.Config{})
	muxHook := reg.MuxHook()
	// One detector for the port and, again, for the bytes inside TLS. The
	// active gRPC mode answers the client's preface with a SETTINGS frame so
	// that grpc-go clients (which wait for it) send their first HEADERS.
	det := &detect.Detector{Timeout: cfg.DetectTimeout, GRPC: detect.GRPCActive, OnResult: reg.DetectHook(opaque.Inbound)}
	mux := detect.NewMux(ln, det, detect.MuxConfig{OnConn: func(ev detect.MuxEvent) {
		muxHook(ev)
		if cfg.Quiet {
			return
		}
		r := ev.Result
		out.Printf("conn %s: %s (%s, %d bytes in %v) %s", ev.RemoteAddr, r.Protocol, r.Reason, r.Bytes, r.Duration.Round(time.Microsecond), ev.Outcome)
	}})
	// The Waiter the mux's connections wait in for their first bytes: the
	// waiter_* families, waiter="mux".
	reg.AddWaiter("mux", mux.WaitStats)
	// gRPC has its own child (without one the mux would send it to the
	// HTTP/2 child), so the HTTP child gets HTTP/1 and the other HTTP/2.
	httpL := mux.Match(detect.HTTP1, detect.HTTP2)
	grpcL := mux.Match(detect.GRPC)
	tlsL := mux.Match(detect.TLS)
	rawL := mux.Default()
	tlsHTTP := newConnQueue(ln.Addr())
	tlsGRPC := newConnQueue(ln.Addr())

	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true) // h2c with prior knowledge, and HTTP/2 decrypted from TLS
	routes := http.NewServeMux()
	routes.Handle("/metrics", promtext.Handler(reg))
	routes.HandleFunc("/", httpHandler)
	httpSrv := &http.Server{
		Handler:           reg.HTTPHandler(routes, metrics.HTTPOptions{Route: routeLabel}),
		Protocols:         protos,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ConnContext:       connContext,
		ErrorLog:          log.New(out, "multiplex: http: ", 0),
	}
	grpcSrv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(echoService, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(grpcSrv, hs)
	grpcSrv.RegisterService(&echoServiceDesc, echoImpl{})

	var handled connSet // TLS handshakes and echoes, closed at shutdown
	handleTLS := func(c net.Conn) {
		c.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
		tc := tls.Server(c, tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			if !cfg.Quiet {
				out.Printf("conn %s: TLS handshake failed: %v", c.RemoteAddr(), err)
			}
			tc.Close()
			return
		}
		c.SetDeadline(time.Time{})
		st := tc.ConnectionState()
		res, inner, err := det.Detect(ctx, tc)
		if err != nil {
			inner.Close()
			return
		}
		if !cfg.Quiet {
			out.Printf("conn %s: inside TLS (%s, sni=%q, alpn=%q): %s (%s)", c.RemoteAddr(), tls.VersionName(st.Version), st.ServerName, st.NegotiatedProtocol, res.Protocol, res.Reason)
		}
		switch res.Protocol {
		case detect.HTTP1, detect.HTTP2:
			if !tlsHTTP.push(&tlsConn{Conn: inner, state: st}) {
				inner.Close()
			}
		case detect.GRPC:
			if !tlsGRPC.push(&tlsConn{Conn: inner, state: st}) {
				inner.Close()
			}
		default:
			echo(inner, cfg.EchoIdle, reg.OpenConn(metrics.ConnLabels{Direction: opaque.Inbound, Protocol: string(res.Protocol), TLS: metrics.TLSTrue}))
		}
	}

	stopping := make(chan struct{}) // closed once, by the shutdown goroutine below
	// serveErr turns the errors servers return once they are stopped into nil.
	serveErr := func(err error) error {
		select {
		case <-stopping:
			if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
				return nil
			}
		default:
		}
		return err
	}
	acceptLoop := func(l net.Listener, fn func(net.Conn)) error {
		// Until shutdown closes l (the mux's child): running out of descriptors is waited out.
		return serveErr(accept.Serve(context.Background(), l, func(c net.Conn) { handled.start(c, fn) }))
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveErr(mux.Serve()) })
	g.Go(func() error { return serveErr(httpSrv.Serve(httpL)) })
	g.Go(func() error { return serveErr(httpSrv.Serve(tlsHTTP)) })
	g.Go(func() error { return serveErr(grpcSrv.Serve(grpcL)) })
	g.Go(func() error { return serveErr(grpcSrv.Serve(tlsGRPC)) })
	g.Go(func() error { return acceptLoop(tlsL, handleTLS) })
	g.Go(func() error {
		return acceptLoop(rawL, func(c net.Conn) {
			echo(c, cfg.EchoIdle, reg.OpenConn(metrics.ConnLabels{Direction: opaque.Inbound, Protocol: string(detect.Unknown), TLS: metrics.TLSFalse}))
		})
	})
	// After a flood of connections, hand the memory back instead of keeping it resident.
	g.Go(func() error { memreturn.Run(gctx, 5*time.Second); return nil })
	g.Go(func() error {
		<-gctx.Done() // ctx canceled, or a server failed
		close(stopping)
		shutdown(mux, httpSrv, grpcSrv, []*connQueue{tlsHTTP, tlsGRPC}, &handled, cfg.ShutdownGrace)
		return nil
	})

	fmt.Fprintf(out, "multiplex: listening on %s (HTTP/1.1, h2c, gRPC, TLS, raw TCP echo)\n", ln.Addr())
	fmt.Fprintf(out, "multiplex: TLS certificate %s\n", certDesc)
	if cfg.ready != nil {
		cfg.ready(ln.Addr())
	}
	err = g.Wait()
	fmt.Fprintln(out, "multiplex: stopped")
	return err
}

// shutdown stops taking connections, lets in-flight requests finish for up
// to grace, then closes whatever is left.
func shutdown(mux *detect.Mux, httpSrv *http.Server, grpcSrv *grpc.Server, queues []*connQueue, handled *connSet, grace time.Duration) {
	// No new connections; those already speaking finish their detection and reach their server
	// (within the grace), then every child listener's Accept fails.
	mctx, cancel := context.WithTimeout(context.Background(), grace)
	mux.Shutdown(mctx)
	cancel()
	for _, q := range queues {
		q.Close()
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		sctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		if httpSrv.Shutdown(sctx) != nil {
			httpSrv.Close()
		}
	}()
	go func() {
		defer wg.Done()
		done := make(chan struct{})
		go func() { grpcSrv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(grace):
			grpcSrv.Stop()
			<-done
		}
	}()
	handled.closeAndWait()
	wg.Wait()
}

// loadCertificate returns the TLS certificate to serve and a description of it.
func loadCertificate(cfg config) (tls.Certificate, string, error) {
	var cert tls.Certificate
	var err error
	switch {
	case cfg.certificate != nil:
		cert = *cfg.certificate
	case cfg.CertFile != "":
		cert, err = tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return cert, "", fmt.Errorf("TLS certificate: %w", err)
		}
	default:
		cert, err = selfsigned.New("sniff multiplex", "localhost", "127.0.0.1", "::1")
		if err != nil {
			return cert, "", err
		}
	}
	if len(cert.Certificate) == 0 {
		return cert, "", errors.New("TLS certificate: empty chain")
	}
	sum := sha256.Sum256(cert.Certificate[0])
	desc := fmt.Sprintf("sha256:%x", sum[:8])
	if cert.Leaf != nil {
		desc = fmt.Sprintf("CN=%q DNS=%v IP=%v (%s)", cert.Leaf.Subject.CommonName, cert.Leaf.DNSNames, cert.Leaf.IPAddresses, desc)
	}
	return cert, desc, nil
}

// routeLabel is the route label of the HTTP metrics: a fixed set, never a
// raw path.
func routeLabel(r *http.Request) string {
	switch r.URL.Path {
	case "/echo", "/metrics":
		return r.URL.Path
	}
	return "/*"
}
