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

// DetectUpstream detects the protocol of client while watching upstream, an established
// connection to the client's destination, so that protocols in which the server speaks first need
// no configuration. It waits, consuming nothing, for the first of:
//
//   - upstream's first bytes: it returns at once with Result{Protocol: Unknown, Reason:
//     ReasonServerFirst}, and the caller splices (an SMTP or MySQL greeting arrives as fast as
//     through a port declared opaque);
//   - the client's first bytes (or EOF): it runs [Detector.Detect] on client, with opts, whose
//     timeout counts from that moment.
//
// While both are silent no detection clock runs; only ctx ends the wait (a [RacePolicy] decides
// when a proxy starts a race at all). An upstream whose first bytes are an HTTP/2 SETTINGS frame
// (sent by HTTP/2 servers before they read the client's preface), or that closes without a byte,
// is not speaking first: the client is awaited for at most the detection timeout. The rule, its
// limits and its measurements are in SERVERFIRST.md in this directory.
//
// It returns the connections to use from then on, client first. On Linux a *net.TCPConn or
// *net.UnixConn is watched with recv(MSG_PEEK) and returned unchanged; any other connection (TLS,
// pipes) loses at most 9 bytes to the race, which the returned [ReplayConn] hands back first, and
// a *tls.Conn is handshaken first (with ctx). Neither connection is closed. Both connections' read
// deadlines are used, then cleared.
//
// err is non-nil only when ctx ends first (ctx.Err()) or a read fails with an error other than
// EOF; the returned connections are then still valid and the caller closes them. OnResult, if set,
// sees every result, server-first ones included.
func (d *Detector) DetectUpstream(ctx context.Context, client, upstream net.Conn, opts ...Option) (Result, net.Conn, net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return Result{Protocol: Unknown}, client, upstream, err
	}
	if _, _, ready, _ := peekNow(client, 1); ready {
		// The usual case for client-first protocols: the client's bytes are already here (a tie
		// goes to the client), so there is nothing to race.
		res, c, err := d.Detect(ctx, client, opts...)
		return res, c, upstream, err
	}
	return d.race(ctx, client, upstream, opts)
}

// race is DetectUpstream when neither side has spoken yet.
func (d *Detector) race(ctx context.Context, client, upstream net.Conn, opts []Option) (Result, net.Conn, net.Conn, error) {
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
		if t := d.callTimeout(opts); t > 0 {
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
	res, c, err := d.Detect(ctx, client, opts...)
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
