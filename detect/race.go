package detect

// Server-first detection: racing the client's first bytes against the upstream's.
//
// # The rule
//
// A proxy that already holds the upstream connection (inbound: the local application; outbound: the
// original destination) calls [Detector.DetectUpstream] instead of [Detector.Detect]. It waits for
// the first of two events, without consuming a byte on either side:
//
//   - the upstream is readable first (a greeting, or its EOF): the result is [ReasonServerFirst] with
//     Protocol [Unknown] at that moment; the caller splices, and the greeting reaches the client as
//     fast as with a port declared opaque;
//   - the client is readable first (data, or its EOF): ordinary detection starts at that moment, with
//     the Detector's Timeout counted from the client's first byte.
//
// While neither side has sent anything, nothing waits on detection: there are no bytes to deliver in
// either direction, so there is no deadline (only ctx ends the wait). A pooled client that connects
// and speaks minutes later (a Memcache pool) is classified the moment its first bytes arrive; a first
// byte that cannot begin any known protocol decides [Unknown] at once. This is the difference from
// Linkerd, which starts a 10 s detection timer at accept: a server-first protocol (SMTP, MySQL,
// MariaDB) on a port not declared opaque stalls 10 s there, because the server is dialled only after
// detection; here the upstream is dialled first and its greeting ends detection.
//
// # Limits
//
// HTTP/1, HTTP/2 and TLS clients can never be misclassified as server-first: in all three the client
// speaks first and the server sends nothing until it has read the client's request, preface or
// ClientHello — a server that must answer cannot win the race against the bytes it is waiting for.
// The same holds for every request/response protocol (Redis, Memcache, PostgreSQL).
//
// A connection is misclassified only if the upstream sends bytes before the client while the client
// would have been detected as a known protocol: an upstream that speaks unprompted on a port whose
// clients speak HTTP or TLS (for instance a server that writes a banner and then also accepts HTTP),
// or a client whose first bytes are delayed past an eager server's. Such a connection is proxied
// opaque: no bytes are lost or reordered, only the protocol-aware features (HTTP routing, SNI) are
// skipped. A protocol where the client speaks first but is not recognised is [Unknown] by the
// ordinary rule, so it is proxied opaque too, just as it would be without the race.
//
// The race needs the upstream before detection: a proxy that routes by what it detects (HTTP Host,
// TLS SNI) cannot dial first, and for it the Detector's Timeout stays the bound. [Learner] lets such
// a proxy remember ports that keep turning out server-first or opaque, and skip detection there.
//
// # How
//
// On Linux, for *net.TCPConn and *net.UnixConn, readiness is observed with recv(MSG_PEEK) through
// SyscallConn, so both connections are returned unchanged and nothing is consumed. For other
// connections (TLS, pipes) one byte is read from the side that became readable (and from the other if
// it had one at the same moment) and handed back in front of the connection's remaining bytes.

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// DetectUpstream detects the protocol of client while watching upstream, an already established
// connection to the client's destination, as described in this file's rule: if upstream's first
// bytes (or its EOF) arrive before any of the client's, it returns at once with
// Result{Protocol: Unknown, Reason: ReasonServerFirst}; otherwise it runs [Detector.Detect] on client
// from the moment the client's first bytes arrive. No detection timeout runs while both are silent.
//
// It returns the connections to use from now on, client first: on Linux for *net.TCPConn the very
// connections given; otherwise they may replay bytes read during the race. Nothing from either side is
// lost or reordered. Neither connection is closed; a caller that does not use the upstream (HTTP
// routed elsewhere) closes it. DetectUpstream uses and then clears the read deadlines of both
// connections.
//
// err is non-nil only when ctx ends first (ctx.Err()) or a read fails with an error other than EOF;
// the returned connections are then still valid and the caller closes them. OnResult, if set, sees
// every result, server-first ones included.
func (d *Detector) DetectUpstream(ctx context.Context, client, upstream net.Conn) (Result, net.Conn, net.Conn, error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return Result{Protocol: Unknown}, client, upstream, err
	}
	rctx, cancel := context.WithCancel(ctx)
	ch := make(chan firstBytes, 2)
	go func() { ch <- awaitFirst(rctx, client, sideClient) }()
	go func() { ch <- awaitFirst(rctx, upstream, sideUpstream) }()
	first := <-ch
	cancel()
	second := <-ch // the loser stops at once; it may have seen bytes in the same instant

	var cf, uf firstBytes
	if first.side == sideClient {
		cf, uf = first, second
	} else {
		cf, uf = second, first
	}
	client = withPrefix(client, cf.b)
	upstream = withPrefix(upstream, uf.b)

	if err := ctx.Err(); err != nil {
		return Result{Protocol: Unknown, Duration: time.Since(start)}, client, upstream, err
	}
	if first.side == sideUpstream {
		res := Result{Protocol: Unknown, Reason: ReasonServerFirst, Bytes: len(cf.b), Duration: time.Since(start)}
		if d.OnResult != nil {
			d.OnResult(res)
		}
		return res, client, upstream, first.err
	}
	if first.err != nil {
		return Result{Protocol: Unknown, Duration: time.Since(start)}, client, upstream, first.err
	}
	res, c, err := d.Detect(ctx, client)
	if c == nil {
		c = client
	}
	return res, c, upstream, err
}

const (
	sideClient = iota
	sideUpstream
)

// firstBytes is what awaitFirst saw on one side.
type firstBytes struct {
	side int
	b    []byte // bytes consumed from the connection (never on the MSG_PEEK path)
	err  error  // nil for data or EOF; a read error; or nil after an interrupted wait
}

// longAgo is a deadline in the past: setting it interrupts a blocked read at once.
var longAgo = time.Unix(1, 0)

// awaitFirst waits until c has a byte or EOF to read, or ctx ends. On the MSG_PEEK path nothing is
// consumed; otherwise at most one byte is read and returned in b. An interrupted wait reports
// err == nil and no bytes; the caller looks at ctx and at which side finished first.
func awaitFirst(ctx context.Context, c net.Conn, side int) firstBytes {
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		_ = c.SetReadDeadline(longAgo)
	})
	r := firstBytes{side: side}
	if ok, err := peekReady(c); ok {
		r.err = err
	} else {
		var one [1]byte
		n, err := c.Read(one[:])
		if n > 0 {
			r.b = []byte{one[0]}
		}
		r.err = err
	}
	if !stop() {
		<-fired // the deadline was set: wait so that clearing it below comes after
	}
	_ = c.SetReadDeadline(time.Time{})
	if r.err == io.EOF || errors.Is(r.err, os.ErrDeadlineExceeded) && ctx.Err() != nil {
		r.err = nil
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
