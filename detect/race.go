package detect

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// DetectUpstream detects the protocol of client while watching upstream, an already established
// connection to the client's destination (inbound: the local application; outbound: the original
// destination), so that server-speaks-first protocols need no configuration. It waits for the first
// of two events, consuming nothing:
//
//   - upstream's first bytes (or its EOF) arrive before any of the client's: it returns at once with
//     Result{Protocol: Unknown, Reason: ReasonServerFirst}; the caller splices, and the greeting
//     (SMTP "220", a MySQL handshake) reaches the client as fast as through a port declared opaque;
//   - the client's first bytes (or its EOF) arrive first: it runs [Detector.Detect] on client, whose
//     Timeout counts from that moment.
//
// While both are silent no detection clock runs (only ctx ends the wait): there are no bytes to
// deliver, so nothing is late. A pooled client that speaks minutes after connecting (Memcache) is
// classified the moment its first bytes come, and a first byte no matcher can start decides Unknown
// at once. Linkerd instead starts its 10 s detection timer at accept and dials the server only after
// detection, so a server-first protocol on a port not declared opaque waits the full timeout.
//
// Client-first protocols keep their detection: HTTP/1, TLS and every request/response protocol
// send nothing from the server until the client's bytes reach it, and nothing is forwarded during
// the race, so their server cannot speak first. Three tie-breaks keep it so: if the client also has
// bytes when the upstream wins, the client wins; an upstream whose first bytes are an HTTP/2
// SETTINGS frame (grpc-go and x/net/http2 servers send theirs before reading the client preface)
// is not a greeting, and neither is an upstream that closes without a byte (a peer proxy that could
// not reach its application): the client is then awaited, for at most the Detector's Timeout. A
// connection is misclassified only when its server speaks unprompted and its client would have
// been recognised: it is then proxied opaque, with every byte intact, but without the
// protocol-aware features. See SERVERFIRST.md in this directory for the full rule, its limits and
// the measurements.
//
// It returns the connections to use from now on, client first. On Linux, *net.TCPConn and
// *net.UnixConn are watched with recv(MSG_PEEK) and returned unchanged (Detect may still wrap the
// client, e.g. in gRPC active mode). Other connections (TLS, pipes) lose one byte to the race (up
// to 9 for the HTTP/2 check), which the returned [ReplayConn] hands back first; a *tls.Conn whose handshake is not done is handshaken
// first (with ctx), because a handshake cut short by the race could not resume. Neither connection
// is closed: a caller that does not use the upstream (HTTP routed elsewhere) closes it. Read
// deadlines of both connections are used to end the race and then cleared, so both must support
// them (as net.Conn requires).
//
// err is non-nil only when ctx ends first (ctx.Err()) or a read fails with an error other than EOF;
// the returned connections are then still valid and the caller closes them. OnResult, if set, sees
// every result, server-first ones included. Use [Learner] to skip the race on ports that keep turning
// out server-first.
func (d *Detector) DetectUpstream(ctx context.Context, client, upstream net.Conn) (Result, net.Conn, net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return Result{Protocol: Unknown}, client, upstream, err
	}
	if _, _, ready, _ := peekNow(client, 1); ready {
		// The usual case for client-first protocols: the client's bytes are already here (a tie
		// goes to the client), so there is nothing to race.
		res, c, err := d.Detect(ctx, client)
		return res, c, upstream, err
	}
	return d.race(ctx, client, upstream)
}

// race is DetectUpstream when neither side has spoken yet.
func (d *Detector) race(ctx context.Context, client, upstream net.Conn) (Result, net.Conn, net.Conn, error) {
	start := time.Now()
	// A TLS handshake interrupted by the race's deadline would break the connection for good, so
	// finish it first (a caller needs it done anyway, e.g. for the peer's identity).
	for _, c := range []net.Conn{client, upstream} {
		if tc, ok := c.(*tls.Conn); ok && !tc.ConnectionState().HandshakeComplete {
			if err := tc.HandshakeContext(ctx); err != nil {
				return Result{Protocol: Unknown, Duration: time.Since(start)}, client, upstream, err
			}
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	ch := make(chan firstBytes, 2)
	go func() { ch <- awaitFirst(rctx, client, sideClient) }()
	go func() { ch <- awaitFirst(rctx, upstream, sideUpstream) }()
	first := <-ch
	cancel()
	second := <-ch // the loser stops at once; it may have seen bytes in the same instant

	cf, uf := first, second
	if first.side == sideUpstream {
		cf, uf = second, first
	}
	if err := ctx.Err(); err != nil {
		return Result{Protocol: Unknown, Duration: time.Since(start)}, withPrefix(client, cf.b), withPrefix(upstream, uf.b), err
	}

	clientFirst := first.side == sideClient
	h2Server, gone := false, false
	if !clientFirst {
		if _, _, ready, _ := peekNow(client, 1); ready || cf.ready {
			clientFirst = true // a tie goes to the client
		} else if uf.err == nil {
			if len(uf.b) > 0 {
				uf.b, uf.err = completeFrameHeader(upstream, uf.b)
				h2Server = uf.err == nil && isH2SettingsHeader(uf.b)
			} else if h, n, _, ok := peekNow(upstream, h2FrameHeaderLen); ok {
				h2Server = isH2SettingsHeader(h[:n])
				gone = n == 0 // ready with nothing to peek: EOF
			} else {
				gone = true // the read path found EOF: a byte would be in uf.b
			}
		}
	}
	client = withPrefix(client, cf.b)
	upstream = withPrefix(upstream, uf.b)
	if h2Server || gone {
		// An HTTP/2 server's preface is no greeting: its client speaks first. Nor is an upstream
		// that closed without a byte (a peer proxy that could not reach its application): the
		// client's protocol still decides what it is told (an HTTP client, a 502). Wait for the
		// client, as long as detection would.
		wctx, wcancel := context.WithCancel(ctx)
		if t := d.timeout(); t > 0 {
			wctx, wcancel = context.WithTimeout(ctx, t)
		}
		w := awaitFirst(wctx, client, sideClient)
		wcancel()
		client = withPrefix(client, w.b)
		if err := ctx.Err(); err != nil {
			return Result{Protocol: Unknown, Duration: time.Since(start)}, client, upstream, err
		}
		clientFirst, cf = w.ready, w
	}
	if !clientFirst {
		res := Result{Protocol: Unknown, Reason: ReasonServerFirst, Bytes: len(cf.b), Duration: time.Since(start)}
		if d.OnResult != nil {
			// Through a pooled session, so that the pointer costs no
			// allocation (res would escape).
			s := getSession(d)
			s.res = res
			d.OnResult(&s.res)
			putSession(s)
		}
		return res, client, upstream, uf.err
	}
	if cf.err != nil {
		return Result{Protocol: Unknown, Duration: time.Since(start)}, client, upstream, cf.err
	}
	res, c, err := d.Detect(ctx, client)
	return res, c, upstream, err
}

// timeout is the detection timeout in effect (<= 0: none).
func (d *Detector) timeout() time.Duration {
	if d.Timeout == 0 {
		return DefaultTimeout
	}
	return d.Timeout
}

// isH2SettingsHeader reports whether b begins with an HTTP/2 SETTINGS frame header (type 4, no
// flags, stream 0, a length that is a multiple of 6): the server preface that x/net/http2 and
// grpc-go servers send before reading the client's.
func isH2SettingsHeader(b []byte) bool {
	if len(b) < h2FrameHeaderLen {
		return false
	}
	length := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
	return b[3] == 0x4 && b[4] == 0 && b[5]&0x7f == 0 && b[6] == 0 && b[7] == 0 && b[8] == 0 && length%6 == 0
}

// frameHeaderWait bounds the wait for the rest of a frame header after its first byte, on
// connections that cannot be peeked: a server writes its SETTINGS frame at once, so the bytes are
// there (a TLS record is decrypted whole).
const frameHeaderWait = 100 * time.Millisecond

// completeFrameHeader reads, from a connection that cannot be peeked, the rest of what may be an
// HTTP/2 frame header after its first byte b[0] (zero for any SETTINGS frame the server preface can
// be), for at most frameHeaderWait. It returns every byte read, to be replayed; only an error other
// than EOF or the wait's end is returned.
func completeFrameHeader(c net.Conn, b []byte) ([]byte, error) {
	if len(b) == 0 || b[0] != 0 || len(b) >= h2FrameHeaderLen {
		return b, nil
	}
	var h [h2FrameHeaderLen]byte
	n := copy(h[:], b)
	_ = c.SetReadDeadline(time.Now().Add(frameHeaderWait))
	m, err := io.ReadFull(c, h[n:])
	_ = c.SetReadDeadline(time.Time{})
	b = append(b, h[n:n+m]...)
	if err == io.EOF || err == io.ErrUnexpectedEOF || errors.Is(err, os.ErrDeadlineExceeded) {
		err = nil
	}
	return b, err
}

// peekNowMax is the most bytes peekNow returns: an HTTP/2 frame header.
const peekNowMax = h2FrameHeaderLen

const (
	sideClient = iota
	sideUpstream
)

// firstBytes is what awaitFirst saw on one side.
type firstBytes struct {
	side  int
	ready bool   // data, EOF or an error was there (not an interrupted wait)
	b     []byte // bytes consumed from the connection (never on the MSG_PEEK path)
	err   error  // a read error other than EOF
}

// awaitFirst waits until c has a byte or EOF to read, or ctx ends. On the MSG_PEEK path nothing is
// consumed; otherwise at most one byte is read and returned in b.
func awaitFirst(ctx context.Context, c net.Conn, side int) firstBytes {
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		_ = c.SetReadDeadline(aLongTimeAgo)
	})
	r := firstBytes{side: side}
	var err error
	if ok, perr := peekReady(c); ok {
		err = perr
	} else {
		var one [1]byte
		var n int
		n, err = c.Read(one[:])
		if n > 0 {
			r.b = []byte{one[0]}
		}
	}
	if !stop() {
		<-fired // the deadline was set: wait so that clearing it below comes after
	}
	_ = c.SetReadDeadline(time.Time{})
	switch {
	case len(r.b) > 0 || err == nil || err == io.EOF:
		r.ready = true
	case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil:
		// interrupted: not ready
	default:
		r.ready, r.err = true, err
	}
	return r
}

// withPrefix returns c itself when b is empty, else a [ReplayConn] that reads b before c's own bytes.
func withPrefix(c net.Conn, b []byte) net.Conn {
	if len(b) == 0 {
		return c
	}
	return NewReplayConn(c, b)
}
