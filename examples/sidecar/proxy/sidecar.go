package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/netutil"
	"golang.org/x/sync/errgroup"

	"github.com/sniffsplice/sniff/transparent"
)

// Forward is one explicit outbound listener: every connection accepted on
// Listen is going to Dst. It replaces SO_ORIGINAL_DST where there are no
// iptables rules (the demo, a laptop).
type Forward struct {
	Listen string
	Dst    netip.AddrPort
}

// Listeners says where a Sidecar listens. Empty addresses are not opened.
type Listeners struct {
	// Outbound is the transparent outbound listener (like 4140): destinations
	// come from SO_ORIGINAL_DST.
	Outbound string
	// Forwards are explicit outbound listeners, one per destination.
	Forwards []Forward
	// Inbound is the inbound listener (like 4143).
	Inbound string
	// InboundTransparent: connections redirected to Inbound from another
	// port (SO_ORIGINAL_DST) are unmeshed clients of that local port.
	InboundTransparent bool
	// Admin is the admin listener (like 4191): /metrics, /ready, /live.
	// In a pod, bind it to the pod's IP (kubelet's probes and Prometheus
	// connect there), not to every address: see k8s/deployment.yaml.
	Admin string
	// Metrics serves /metrics on the admin listener (nil: 404).
	Metrics http.Handler
	// AdminMaxConns caps the admin listener's open connections; further
	// ones wait in the listen backlog until one closes (0:
	// DefaultAdminMaxConns).
	AdminMaxConns int
	// AdminIdleTimeout closes an admin keep-alive connection idle this long
	// (0: DefaultAdminIdleTimeout). Besides, a request must arrive whole
	// within 10s of its first byte and be answered within 30s.
	AdminIdleTimeout time.Duration
}

// Defaults of the admin listener's limits. Its clients are kubelet's probes
// and a Prometheus scraper or two, each sending requests of a few hundred
// bytes: none needs many connections, or an idle one kept for long.
const (
	DefaultAdminMaxConns    = 64
	DefaultAdminIdleTimeout = 30 * time.Second
)

const (
	adminReadTimeout  = 10 * time.Second // a request's headers and body
	adminWriteTimeout = 30 * time.Second // from the end of the request headers to the end of the answer
)

// Sidecar is a running Proxy with its listeners.
type Sidecar struct {
	Proxy *Proxy
	// The bound addresses, in the order of Listeners (nil when not opened).
	OutboundAddr net.Addr
	ForwardAddrs []net.Addr
	InboundAddr  net.Addr
	AdminAddr    net.Addr

	ready      atomic.Bool
	cancel     context.CancelFunc // ends everything
	stopAccept context.CancelFunc // ends accepting only (Shutdown)
	g          *errgroup.Group
	proxies    sync.WaitGroup // the outbound, forward and inbound listeners' jobs
	once       sync.Once
	err        error
}

// Start opens every listener of ls (so bad addresses fail here, before
// anything is served) and serves them until ctx ends or Close is called.
func Start(ctx context.Context, p *Proxy, ls Listeners) (*Sidecar, error) {
	if err := p.init(); err != nil {
		return nil, err
	}
	s := &Sidecar{Proxy: p}
	var opened []net.Listener
	fail := func(err error) (*Sidecar, error) {
		for _, l := range opened {
			l.Close()
		}
		return nil, err
	}
	listen := func(what, addr string) (net.Listener, error) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("sidecar: %s listener: %w", what, err)
		}
		opened = append(opened, l)
		p.addOwnPort(l.Addr())
		return l, nil
	}
	type job struct {
		l     net.Listener
		proxy bool // a listener of the proxy (not the admin server): Shutdown drains it
		// run serves l until acceptCtx ends, its connections until connCtx does.
		run func(acceptCtx, connCtx context.Context, l net.Listener) error
	}
	var jobs []job
	if ls.Outbound != "" {
		l, err := listen("outbound", ls.Outbound)
		if err != nil {
			return fail(err)
		}
		s.OutboundAddr = l.Addr()
		jobs = append(jobs, job{l, true, func(actx, cctx context.Context, l net.Listener) error {
			return p.serveOutbound(actx, cctx, l, transparent.OriginalDst)
		}})
	}
	for _, f := range ls.Forwards {
		if !f.Dst.IsValid() {
			return fail(fmt.Errorf("sidecar: forward %s: no destination", f.Listen))
		}
		l, err := listen("forward", f.Listen)
		if err != nil {
			return fail(err)
		}
		s.ForwardAddrs = append(s.ForwardAddrs, l.Addr())
		dst := Fixed(f.Dst)
		jobs = append(jobs, job{l, true, func(actx, cctx context.Context, l net.Listener) error {
			return p.serveOutbound(actx, cctx, l, dst)
		}})
	}
	if ls.Inbound != "" {
		l, err := listen("inbound", ls.Inbound)
		if err != nil {
			return fail(err)
		}
		s.InboundAddr = l.Addr()
		var dst DstFunc
		if ls.InboundTransparent {
			dst = transparent.OriginalDst
		}
		jobs = append(jobs, job{l, true, func(actx, cctx context.Context, l net.Listener) error {
			return p.serveInbound(actx, cctx, l, dst)
		}})
	}
	var admin *http.Server
	if ls.Admin != "" {
		l, err := listen("admin", ls.Admin)
		if err != nil {
			return fail(err)
		}
		s.AdminAddr = l.Addr()
		admin = &http.Server{
			Handler:           s.adminHandler(ls.Metrics),
			ReadHeaderTimeout: adminReadTimeout,
			ReadTimeout:       adminReadTimeout,
			WriteTimeout:      adminWriteTimeout,
			IdleTimeout:       DefaultAdminIdleTimeout,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          discardLog,
		}
		if ls.AdminIdleTimeout > 0 {
			admin.IdleTimeout = ls.AdminIdleTimeout
		}
		maxConns := DefaultAdminMaxConns
		if ls.AdminMaxConns > 0 {
			maxConns = ls.AdminMaxConns
		}
		// The admin server stays up through a drain (liveness, /ready saying 503) until Close.
		jobs = append(jobs, job{l, false, func(_, _ context.Context, l net.Listener) error {
			err := admin.Serve(netutil.LimitListener(l, maxConns))
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return err
		}})
	}
	ctx, s.cancel = context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(ctx)
	s.g = g
	actx, stopAccept := context.WithCancel(gctx)
	s.stopAccept = stopAccept
	for _, j := range jobs {
		if j.proxy {
			s.proxies.Add(1)
		}
		g.Go(func() error {
			if j.proxy {
				defer s.proxies.Done()
			}
			return j.run(actx, gctx, j.l)
		})
	}
	if admin != nil {
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return admin.Shutdown(sctx)
		})
	}
	s.ready.Store(true)
	return s, nil
}

// Shutdown stops the sidecar the way a pod's termination expects: /ready
// answers 503 at once; the outbound, forward and inbound listeners stop
// accepting; connections that have not said anything yet are closed; the
// others run to their end (a spliced connection until both sides close; an
// HTTP connection until the request in flight is answered, with Connection:
// close for HTTP/1.1 and a GOAWAY for HTTP/2, as net/http's Shutdown does; an
// idle keep-alive connection is closed). When they all have, or when ctx
// ends, Close ends whatever is left. It returns ctx's error if ctx ended first,
// else what Close returns.
func (s *Sidecar) Shutdown(ctx context.Context) error {
	s.ready.Store(false)
	s.stopAccept()
	drained := make(chan struct{})
	go func() { s.proxies.Wait(); close(drained) }()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close stops every listener, ends every connection, waits for them and
// returns the first serving error.
func (s *Sidecar) Close() error {
	s.once.Do(func() {
		s.ready.Store(false)
		s.cancel()
		s.err = s.g.Wait()
		s.Proxy.CloseIdleConnections()
	})
	return s.err
}

// Wait blocks until the sidecar stops (its context ended or a listener
// failed) and returns the first serving error.
func (s *Sidecar) Wait() error {
	err := s.g.Wait()
	s.Close()
	return err
}

func (s *Sidecar) adminHandler(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "live")
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !s.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready")
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	return mux
}
