package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sniffsplice/sniff/accept"
	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/examples/internal/lines"
	"github.com/sniffsplice/sniff/examples/internal/promtext"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/splice"
)

// TLS alert descriptions (RFC 8446 section 6) the proxy writes when it
// refuses a connection.
const (
	alertInternalError    = 80
	alertUnrecognizedName = 112
)

// refuseLinger bounds how long a refused connection is kept to let the alert
// reach the client before the socket is closed.
const refuseLinger = 2 * time.Second

// run listens on cfg.Listen and routes connections until ctx ends, then
// closes the listener and every proxied connection and returns nil. It
// returns an error when it cannot start or accepting fails for good.
func run(ctx context.Context, cfg config, stdout io.Writer) error {
	rt, err := newRouter(cfg.Routes, cfg.Default)
	if err != nil {
		return err
	}
	reg := metrics.New(metrics.Config{})
	var metricsLn net.Listener
	if cfg.Metrics != "" {
		if metricsLn, err = net.Listen("tcp", cfg.Metrics); err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		if metricsLn != nil {
			metricsLn.Close()
		}
		return err
	}
	p := &proxy{
		cfg:    cfg,
		router: rt,
		reg:    reg,
		// Only the TLS matcher: any other first byte is refused at once.
		det: &detect.Detector{
			Matchers: []detect.Matcher{detect.TLSMatcher()},
			Timeout:  cfg.DetectTimeout,
			OnResult: reg.DetectHook(opaque.Inbound),
		},
		// One event loop joins every proxied connection: an idle one
		// holds its two sockets and no goroutine.
		loop: &splice.Loop{IdleTimeout: cfg.IdleTimeout},
		out:  &lines.Writer{Prefix: "sniproxy: ", W: stdout},
	}
	fmt.Fprintf(p.out, "sniproxy: listening on %s\n", ln.Addr())
	var metricsAddr net.Addr
	metricsDone := make(chan struct{})
	var metricsSrv *http.Server
	if metricsLn != nil {
		metricsAddr = metricsLn.Addr()
		metricsSrv = &http.Server{Handler: metricsHandler(reg), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			defer close(metricsDone)
			metricsSrv.Serve(metricsLn)
		}()
		fmt.Fprintf(p.out, "sniproxy: metrics on http://%s/metrics\n", metricsAddr)
	} else {
		close(metricsDone)
	}
	for _, r := range cfg.Routes {
		fmt.Fprintf(p.out, "sniproxy: route %s -> %s\n", r.Pattern, r.Backend)
	}
	if cfg.Default != "" {
		fmt.Fprintf(p.out, "sniproxy: route default -> %s\n", cfg.Default)
	} else {
		fmt.Fprintf(p.out, "sniproxy: unknown names are refused (TLS alert unrecognized_name)\n")
	}
	if cfg.ready != nil {
		cfg.ready(ln.Addr(), metricsAddr)
	}

	connCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Accepting waits out EMFILE and the like; a client waits for its ClientHello in the
	// Waiter, with no goroutine, until its detection timeout.
	var wg sync.WaitGroup
	var waiter detect.Waiter
	err = accept.Serve(connCtx, ln, func(c net.Conn) {
		wg.Add(1)
		waiter.Wait(c, p.detectTimeout(), func(c net.Conn, werr error) {
			defer wg.Done()
			if werr != nil {
				p.logf("conn %s: refused: no ClientHello: %v", c.RemoteAddr(), werr)
				c.Close()
				return
			}
			p.handle(connCtx, c)
		})
	})
	cancel()
	waiter.Close()
	wg.Wait()
	p.loop.Close() // the joins end (ctx is done); waits for their done calls
	if metricsSrv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		if metricsSrv.Shutdown(sctx) != nil {
			metricsSrv.Close()
		}
		scancel()
	}
	<-metricsDone
	fmt.Fprintln(p.out, "sniproxy: stopped")
	if ctx.Err() != nil {
		return nil
	}
	return err
}

type proxy struct {
	cfg    config
	router *router
	reg    *metrics.Registry
	det    *detect.Detector
	loop   *splice.Loop
	out    *lines.Writer
}

// detectTimeout is how long a client may take to send its ClientHello.
func (p *proxy) detectTimeout() time.Duration {
	if t := p.det.Timeout; t != 0 {
		return t
	}
	return detect.DefaultTimeout
}

// handle peeks at the ClientHello, picks the backend and hands the client
// and the backend to the loop; c is closed in every case (by the loop when
// the join ends).
func (p *proxy) handle(ctx context.Context, c net.Conn) {
	res, c, err := p.det.Detect(ctx, c)
	if err != nil {
		p.logf("conn %s: refused: detection failed: %v", c.RemoteAddr(), err)
		c.Close()
		return
	}
	if res.Protocol != detect.TLS {
		p.logf("conn %s: refused: not TLS (%s, %d bytes)", c.RemoteAddr(), res.Reason, res.Bytes)
		c.Close()
		return
	}
	sni := res.TLS.ServerName()
	backend, rule, ok := p.router.lookup(sni)
	if !ok {
		refuse(c, res.Bytes, alertUnrecognizedName)
		p.logf("conn %s: sni=%q: refused: no route (alert unrecognized_name)", c.RemoteAddr(), sni)
		return
	}
	d := net.Dialer{Timeout: p.cfg.DialTimeout}
	up, err := d.DialContext(ctx, "tcp", backend)
	if err != nil {
		refuse(c, res.Bytes, alertInternalError)
		p.logf("conn %s: sni=%q route=%s backend=%s: refused: %v (alert internal_error)", c.RemoteAddr(), sni, rule, backend, err)
		return
	}
	mc := p.reg.OpenConn(metrics.ConnLabelsFor(opaque.Inbound, detect.TLS, false)) // TLS passed through: tls="opaque"
	remote := c.RemoteAddr()
	// done runs on the loop's worker when the join ends: keep it short.
	done := func(st splice.Stats) {
		mc.End(st)
		end := "ok"
		if st.Err != nil {
			end = fmt.Sprintf("%s: %v", st.End, st.Err)
		}
		p.logf("conn %s: sni=%q route=%s backend=%s: %d bytes up, %d down, %v, %s", remote, sni, rule, backend, st.AToB, st.BToA, st.Duration.Round(time.Millisecond), end)
	}
	if err := p.loop.Start(ctx, c, up, mc.Observer(), done); err != nil {
		// Not started (the proxy is stopping): done will not be called.
		mc.End(splice.Stats{Err: err})
		c.Close()
		up.Close()
		p.logf("conn %s: sni=%q route=%s backend=%s: not joined: %v", remote, sni, rule, backend, err)
	}
}

// refuse answers a client whose ClientHello (peeked bytes long) cannot be
// routed with a fatal TLS alert, then closes. The proxy never speaks TLS, so
// the alert is a raw plaintext record, as a TLS server would send it before
// its ServerHello. The ClientHello is read first: closing a socket with
// unread bytes would send a reset, and the client might lose the alert.
func refuse(c net.Conn, peeked int, alert byte) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(refuseLinger))
	if _, err := io.CopyN(io.Discard, c, int64(peeked)); err != nil {
		return
	}
	// Record: type alert (21), version TLS 1.2, length 2; alert: fatal (2), description.
	if _, err := c.Write([]byte{21, 3, 3, 0, 2, 2, alert}); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	// Wait (bounded by the deadline) for the client to close its side, so
	// nothing it sent after the hello turns the close into a reset.
	io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

func (p *proxy) logf(format string, args ...any) {
	if p.cfg.Quiet {
		return
	}
	p.out.Printf(format, args...)
}

// metricsHandler serves reg in the Prometheus text format at /metrics.
func metricsHandler(reg *metrics.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promtext.Handler(reg))
	return mux
}
