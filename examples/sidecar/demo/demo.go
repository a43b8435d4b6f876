package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/examples/sidecar/internal/policyfile"
	"github.com/sniffsplice/sniff/examples/sidecar/proxy"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/spiffe"
)

// options are the demo's knobs (flags in main).
type options struct {
	// DetectTimeout is Linkerd's detection timeout (10 s by default).
	DetectTimeout time.Duration
	// NoRace turns server-first racing off, to show what Linkerd does.
	NoRace bool
	// Silence is how long the Memcache-style client waits before its first byte.
	Silence time.Duration
	// Verbose prints every sidecar event.
	Verbose bool
}

// row is one line of the table: one backend, one client, one connection.
type row struct {
	Name      string
	Backend   net.Listener
	WantProto detect.Protocol
	WantPath  proxy.Path
	Client    func(ctx context.Context, dial func(context.Context, string) (net.Conn, error), addr string) (string, error)
	// Authority and Requests, for backends served at the HTTP layer: the
	// requests' authority and how many the client sends.
	Authority string
	Requests  uint64

	// Filled in by the run.
	Check          string        // what the client saw, checked
	Sent, Recv     int64         // bytes the client sent and received
	TTFB           time.Duration // client's time to first byte
	Out, In        proxy.Event   // the two sidecars' events for the connection
	Err            error         // nil: the row is correct
	listen, target string
}

// maxUnread bounds the HTTP/2 control-frame bytes by which the client's
// counts and sidecar A's may differ (see drive).
const maxUnread = 64

// ids are the demo's identities, issued by a throw-away CA.
const (
	trustDomain = "demo.test"
	clientPath  = "/ns/default/sa/client"
	// clientIDString is what the backends see in l5d-client-id.
	clientIDString = "spiffe://" + trustDomain + clientPath
	serverPath     = "/ns/default/sa/server"
)

// events collects the sidecars' per-connection events by backend port.
type events struct {
	mu   sync.Mutex
	out  map[uint16][]proxy.Event
	in   map[uint16][]proxy.Event
	verb io.Writer
}

func (e *events) add(ev proxy.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.in
	if ev.Direction == opaque.Outbound {
		m = e.out
	}
	m[ev.Dst.Port()] = append(m[ev.Dst.Port()], ev)
	if e.verb != nil {
		dir := "inbound "
		if ev.Direction == opaque.Outbound {
			dir = "outbound"
		}
		fmt.Fprintf(e.verb, "  event %s dst=%s proto=%s path=%s peer=%s bytes=%d/%d err=%v\n",
			dir, ev.Dst, ev.Protocol, ev.Path, ev.PeerID, ev.ClientBytes, ev.ServerBytes, ev.Err)
	}
}

// wait returns the events of both sidecars for port once each has exactly
// one. With http set, inbound connections that carried nothing from A are
// left out: for a client that turns out to speak HTTP, A closes the upstream
// it opened early for the server-first race, and sends the requests over its
// pool to B instead.
//
// A's pool may also have used more than one connection to B for the
// client's requests (net/http's Transport dials anew when a request comes
// before the previous connection is back in the pool); closeIdle closes the
// pool's idle connections so that B reports them, and every one of them is
// checked (all returned in more).
func (e *events) wait(ctx context.Context, port uint16, closeIdle func()) (out, in proxy.Event, more []proxy.Event, err error) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if closeIdle != nil {
			closeIdle()
		}
		e.mu.Lock()
		o, i := e.out[port], e.in[port]
		e.mu.Unlock()
		if closeIdle != nil {
			var kept []proxy.Event
			for _, ev := range i {
				if ev.ClientBytes > 0 || ev.Protocol != detect.Unknown {
					kept = append(kept, ev)
				}
			}
			if len(o) == 1 && len(kept) >= 1 {
				return o[0], kept[0], kept[1:], nil
			}
			i = nil
		}
		if len(o) > 1 || len(i) > 1 {
			return proxy.Event{}, proxy.Event{}, nil, fmt.Errorf("%d outbound and %d inbound connections, want 1 each", len(o), len(i))
		}
		if len(o) == 1 && len(i) == 1 {
			return o[0], i[0], nil, nil
		}
		select {
		case <-ctx.Done():
			return proxy.Event{}, proxy.Event{}, nil, fmt.Errorf("sidecar events: %d outbound, %d inbound: %w", len(o), len(i), ctx.Err())
		case <-t.C:
		}
	}
}

// run starts the backends and the two sidecars, drives every client, prints
// the table to w and reports whether every row is correct.
func run(ctx context.Context, w io.Writer, o options) (rows []*row, err error) {
	if o.Silence == 0 {
		o.Silence = time.Second
	}
	be, err := startBackends()
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := be.close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	port := func(l net.Listener) uint16 { return uint16(l.Addr().(*net.TCPAddr).Port) }

	rows = []*row{
		{Name: "http1", Backend: be.http1, WantProto: detect.HTTP1, WantPath: proxy.PathDetect, Client: clientHTTP1, Authority: "http1.demo.test", Requests: 3},
		{Name: "h2c", Backend: be.h2c, WantProto: detect.HTTP2, WantPath: proxy.PathDetect, Client: clientH2C, Authority: "h2c.demo.test", Requests: 3},
		{Name: "grpc", Backend: be.grpc, WantProto: detect.GRPC, WantPath: proxy.PathDetect, Client: clientGRPC, Authority: "grpc.demo.test", Requests: 1},
		{Name: "smtp", Backend: be.smtp, WantProto: detect.Unknown, WantPath: proxy.PathServerFirst, Client: clientSMTP},
		{Name: "redis", Backend: be.redis, WantProto: detect.Unknown, WantPath: proxy.PathOpaque, Client: clientRedis},
		{Name: "memcache", Backend: be.memcache, WantProto: detect.Unknown, WantPath: proxy.PathDetect, Client: silentClient(o.Silence)},
	}
	if o.NoRace {
		// Without the race, the server-first protocol waits for the timeout.
		rows[3].WantPath = proxy.PathDetect
	}

	// The policy, in the words a Linkerd user writes: the Redis-style port
	// is declared opaque; every other port is left to detection.
	annotations := fmt.Sprintf("config.linkerd.io/opaque-ports: \"%d\"\n", port(be.redis))
	pf, err := policyfile.Parse(strings.NewReader(annotations))
	if err != nil {
		return nil, err
	}
	layer := pf.Layer
	layer.DetectTimeout = o.DetectTimeout
	table, err := opaque.Compile(opaque.Policy{Workload: layer})
	if err != nil {
		return nil, err
	}
	policy := opaque.NewResolver(table)

	ca := mtlstest.MustNew(trustDomain)
	clientID, serverID := ca.ID(clientPath), ca.ID(serverPath)
	ev := &events{out: map[uint16][]proxy.Event{}, in: map[uint16][]proxy.Event{}}
	if o.Verbose {
		ev.verb = w
	}
	det := &detect.Detector{GRPC: detect.GRPCActive}

	// Sidecar B, in front of the backends: inbound only, accepts only the
	// client's identity.
	srcB := ca.Source(serverPath)
	pB := &proxy.Proxy{
		TLS:      &mtls.Config{SVID: srcB, Bundle: srcB, Authorize: mtls.AuthorizeID(clientID)},
		Policy:   policy,
		Detector: det,
		NoRace:   o.NoRace,
		OnEvent:  ev.add,
		Metrics:  metrics.New(metrics.Config{}),
	}
	sB, err := proxy.Start(ctx, pB, proxy.Listeners{Inbound: "127.0.0.1:0", Admin: "127.0.0.1:0"})
	if err != nil {
		return nil, err
	}
	defer sB.Close()

	// Sidecar A, beside the clients: one outbound listener per backend (the
	// explicit form of SO_ORIGINAL_DST), every destination meshed behind B.
	srcA := ca.Source(clientPath)
	pA := &proxy.Proxy{
		TLS:      &mtls.Config{SVID: srcA, Bundle: srcA},
		Policy:   policy,
		Detector: det,
		NoRace:   o.NoRace,
		OnEvent:  ev.add,
		Metrics:  metrics.New(metrics.Config{}),
		Peers: func(netip.AddrPort) (proxy.Peer, error) {
			return proxy.Peer{Addr: sB.InboundAddr.String(), ID: serverID}, nil
		},
	}
	var fwd []proxy.Forward
	for _, r := range rows {
		fwd = append(fwd, proxy.Forward{Listen: "127.0.0.1:0", Dst: r.Backend.Addr().(*net.TCPAddr).AddrPort()})
	}
	sA, err := proxy.Start(ctx, pA, proxy.Listeners{Forwards: fwd, Admin: "127.0.0.1:0"})
	if err != nil {
		return nil, err
	}
	defer sA.Close()

	fmt.Fprintf(w, "sniff mesh demo: client -> sidecar A (outbound) -> mTLS %s -> sidecar B (inbound %s) -> backend\n",
		opaque.ALPN, sB.InboundAddr)
	fmt.Fprintf(w, "identities (throw-away CA): A = %s, B = %s\n", clientID, serverID)
	fmt.Fprintf(w, "policy: %sdetect timeout %s, server-first race %v\n\n", annotations, o.DetectTimeout, !o.NoRace)

	for i, r := range rows {
		r.listen, r.target = sA.ForwardAddrs[i].String(), r.Backend.Addr().String()
		r.Err = drive(ctx, r, ev, pA, pB, clientID, serverID)
	}
	printTable(w, rows)
	return rows, nil
}

// drive runs one row's client and checks everything the table shows.
func drive(ctx context.Context, r *row, ev *events, pA, pB *proxy.Proxy, clientID, serverID spiffe.ID) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var m meter
	check, err := r.Client(cctx, m.dial, r.listen)
	r.Check = check
	n, sent, recv, ttfb := m.totals()
	r.Sent, r.Recv, r.TTFB = sent, recv, ttfb
	if err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("client opened %d connections, want 1", n)
	}
	port := uint16(r.Backend.Addr().(*net.TCPAddr).Port)
	http := r.Authority != ""
	var closeIdle func()
	if http {
		closeIdle = pA.CloseIdleConnections
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	out, in, more, err := ev.wait(wctx, port, closeIdle)
	r.Out, r.In = out, in
	if err != nil {
		return err
	}
	for _, m := range more { // further pooled connections A used for the same client
		if m.Err != nil || m.PeerID != clientID || m.Path != proxy.PathHeader || m.Protocol == detect.Unknown {
			return fmt.Errorf("inbound connection %+v", m)
		}
	}
	// An HTTP/2 client (grpc-go, net/http) may close while the server's last
	// control frames (a PING or SETTINGS ACK, GOAWAY) are unread; its kernel
	// then answers with a reset, which the sidecars pass on. That is the
	// client's normal way to end, not a failure of the mesh.
	h2 := out.Detect.Protocol == detect.GRPC || out.Detect.Protocol == detect.HTTP2
	closeErr := func(err error) bool { return h2 && errors.Is(err, syscall.ECONNRESET) }
	var errs []error
	if out.Err != nil && !closeErr(out.Err) {
		errs = append(errs, fmt.Errorf("outbound: %w", out.Err))
	}
	if in.Err != nil && !closeErr(in.Err) {
		errs = append(errs, fmt.Errorf("inbound: %w", in.Err))
	}
	if out.Protocol != r.WantProto {
		errs = append(errs, fmt.Errorf("protocol %s, want %s", out.Protocol, r.WantProto))
	}
	if out.Path != r.WantPath {
		errs = append(errs, fmt.Errorf("path %s, want %s", out.Path, r.WantPath))
	}
	if in.Path != proxy.PathHeader {
		errs = append(errs, fmt.Errorf("inbound path %s, want %s", in.Path, proxy.PathHeader))
	}
	if in.PeerID != clientID {
		errs = append(errs, fmt.Errorf("inbound saw peer %q, want %s", in.PeerID, clientID))
	}
	if out.PeerID != serverID {
		errs = append(errs, fmt.Errorf("outbound saw peer %q, want %s", out.PeerID, serverID))
	}
	// The bytes the client counted are the bytes the sidecars carried, both
	// ways. On HTTP/2 the counts may differ by a few empty control frames
	// (9 bytes each, at most maxUnread in all): active gRPC detection answers
	// the client's preface with its own SETTINGS and ACKs (and drops the
	// client's ACK of them) before net/http serves the connection, and a
	// client that closes leaves the server's last frames unread.
	diff := func(a, b int64) int64 {
		if a > b {
			return a - b
		}
		return b - a
	}
	if h2 {
		if diff(out.ClientBytes, sent) > maxUnread || diff(out.ServerBytes, recv) > maxUnread {
			errs = append(errs, fmt.Errorf("sidecar A carried %d/%d bytes, the client counted %d/%d", out.ClientBytes, out.ServerBytes, sent, recv))
		}
	} else if out.ClientBytes != sent || out.ServerBytes != recv {
		errs = append(errs, fmt.Errorf("sidecar A carried %d/%d bytes, the client counted %d/%d", out.ClientBytes, out.ServerBytes, sent, recv))
	}
	if http {
		// Served at the HTTP layer: every request went through both sidecars'
		// reverse proxies and their per-request metrics.
		a := requests(pA.Metrics.Snapshot(), opaque.Outbound, r.Authority)
		b := requests(pB.Metrics.Snapshot(), opaque.Inbound, r.Authority)
		if a != r.Requests || b != r.Requests {
			errs = append(errs, fmt.Errorf("requests counted by A/B: %d/%d, want %d", a, b, r.Requests))
		}
		r.Check += fmt.Sprintf("; A/B counted %d/%d", a, b)
	} else if in.ClientBytes != out.ClientBytes || in.ServerBytes != out.ServerBytes {
		errs = append(errs, fmt.Errorf("sidecar B carried %d/%d bytes, A %d/%d", in.ClientBytes, in.ServerBytes, out.ClientBytes, out.ServerBytes))
	}
	if ttfb < 0 || ttfb > time.Second {
		errs = append(errs, fmt.Errorf("time to first byte %v, want under 1s", ttfb))
	}
	return errors.Join(errs...)
}

func printTable(w io.Writer, rows []*row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tPROTOCOL\tPATH A -> B\tC->S\tS->C\tTTFB\tPEER SEEN BY B\tDATA\tOK")
	bad := 0
	for _, r := range rows {
		ok := "ok"
		if r.Err != nil {
			ok = "FAIL"
			bad++
		}
		proto := string(r.Out.Protocol)
		if r.Authority != "" {
			proto += " (HTTP layer)"
		}
		switch r.Out.Path {
		case proxy.PathOpaque:
			proto = "opaque (declared)"
		case proxy.PathServerFirst:
			proto = "opaque (server-first)"
		case proxy.PathDetect:
			if r.Out.Protocol == detect.Unknown {
				proto = "unknown -> opaque"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s -> %s\t%d\t%d\t%s\t%s\t%s\t%s\n", r.Name, proto, r.Out.Path, r.In.Path,
			r.Sent, r.Recv, fmtDur(r.TTFB), r.In.PeerID, r.Check, ok)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range rows {
		if r.Err != nil {
			fmt.Fprintf(w, "%s: %v\n", r.Name, r.Err)
		}
	}
	if bad == 0 {
		fmt.Fprintf(w, "all %d rows correct\n", len(rows))
	} else {
		fmt.Fprintf(w, "%d of %d rows wrong\n", bad, len(rows))
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
	}
	return d.Round(10 * time.Millisecond).String()
}

// The clients. Each returns a short description of the data it checked.

// do sends req and reads the whole response body.
func do(c *http.Client, req *http.Request) (*http.Response, []byte, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func clientHTTP1(ctx context.Context, dial func(context.Context, string) (net.Conn, error), addr string) (string, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx, addr) }}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	const n = 3
	for i := range n {
		body := strings.Repeat("x", 10*(i+1))
		req, err := http.NewRequestWithContext(ctx, "POST", "http://http1.demo.test/http1", strings.NewReader(body))
		if err != nil {
			return "", err
		}
		resp, got, err := do(c, req)
		if err != nil {
			return "", err
		}
		want := fmt.Sprintf("hello http1 over HTTP/1.1, you sent %d bytes, from %s", len(body), clientIDString)
		if resp.StatusCode != 200 || string(got) != want {
			return "", fmt.Errorf("response %d %q, want 200 %q", resp.StatusCode, got, want)
		}
	}
	return fmt.Sprintf("%d keep-alive requests, 200, body, l5d-client-id", n), nil
}

func clientH2C(ctx context.Context, dial func(context.Context, string) (net.Conn, error), addr string) (string, error) {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx, addr) }}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	const n = 3
	for range n {
		req, err := http.NewRequestWithContext(ctx, "GET", "http://h2c.demo.test/h2c", nil)
		if err != nil {
			return "", err
		}
		resp, got, err := do(c, req)
		if err != nil {
			return "", err
		}
		want := "hello h2c over HTTP/2.0, you sent 0 bytes, from " + clientIDString
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 || string(got) != want {
			return "", fmt.Errorf("response %s %d %q, want HTTP/2.0 200 %q", resp.Proto, resp.StatusCode, got, want)
		}
	}
	return fmt.Sprintf("%d streams on one conn, 200, body, l5d-client-id", n), nil
}

func clientGRPC(ctx context.Context, dial func(context.Context, string) (net.Conn, error), addr string) (string, error) {
	st, err := grpcHealth(ctx, addr, dial)
	if err != nil {
		return "", err
	}
	if st != "SERVING" {
		return "", fmt.Errorf("health status %s, want SERVING", st)
	}
	return "grpc-go health: SERVING", nil
}

func clientSMTP(ctx context.Context, dial func(context.Context, string) (net.Conn, error), addr string) (string, error) {
	c, err := dial(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	expect := func(want string) error {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("waiting for %q: %w", want, err)
		}
		if !strings.HasPrefix(line, want) {
			return fmt.Errorf("got %q, want %q", line, want)
		}
		return nil
	}
	// The client says nothing until the server greets it.
	if err := expect("220 smtp.demo.test"); err != nil {
		return "", err
	}
	fmt.Fprintf(c, "EHLO client.demo.test\r\n")
	if err := expect("250-smtp.demo.test greets client.demo.test"); err != nil {
		return "", err
	}
	if err := expect("250 8BITMIME"); err != nil {
		return "", err
	}
	fmt.Fprintf(c, "QUIT\r\n")
	if err := expect("221 bye"); err != nil {
		return "", err
	}
	return "220 greeting, EHLO, QUIT", nil
}

func clientRedis(ctx context.Context, dial func(context.Context, string) (net.Conn, error), addr string) (string, error) {
	c, err := dial(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	for _, step := range []struct {
		cmd  []string
		want string
	}{
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"SET", "greeting", "through the mesh"}, "+OK\r\n"},
		{[]string{"GET", "greeting"}, "$16\r\nthrough the mesh\r\n"},
	} {
		if _, err := io.WriteString(c, respCommand(step.cmd...)); err != nil {
			return "", err
		}
		got := make([]byte, len(step.want))
		if _, err := io.ReadFull(r, got); err != nil {
			return "", fmt.Errorf("%s: %w", step.cmd[0], err)
		}
		if string(got) != step.want {
			return "", fmt.Errorf("%s: got %q, want %q", step.cmd[0], got, step.want)
		}
	}
	return "PING, SET, GET round trip", nil
}

// silentClient connects, says nothing for a while (as pooled Memcache
// connections do), then asks for a key.
func silentClient(silence time.Duration) func(context.Context, func(context.Context, string) (net.Conn, error), string) (string, error) {
	return func(ctx context.Context, dial func(context.Context, string) (net.Conn, error), addr string) (string, error) {
		c, err := dial(ctx, addr)
		if err != nil {
			return "", err
		}
		defer c.Close()
		select {
		case <-time.After(silence):
		case <-ctx.Done():
			return "", ctx.Err()
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(c, "get user:42\r\n"); err != nil {
			return "", err
		}
		want := "VALUE user:42 0 14\r\ncached:user:42\r\nEND\r\n"
		got := make([]byte, len(want))
		if _, err := io.ReadFull(c, got); err != nil {
			return "", err
		}
		if string(got) != want {
			return "", fmt.Errorf("got %q, want %q", got, want)
		}
		return fmt.Sprintf("silent %s, then get: VALUE", silence), nil
	}
}

// requests sums request_total of one direction and authority.
func requests(s metrics.Snapshot, dir opaque.Direction, authority string) uint64 {
	return uint64(s.Value("request_total", "direction", dir.String(), "authority", authority))
}
