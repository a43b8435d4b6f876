package proxyproto

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/sniffsplice/sniff/internal/replay"
)

// Policy says what to do with the PROXY header of connections from a
// source: only a load balancer one trusts may speak for its clients, since
// a header from anyone else would let them claim any address.
type Policy uint8

// Policies, as in HAProxy's accept-proxy and go-proxyproto's policies.
const (
	// Require: the connection must begin with a header (HAProxy's
	// accept-proxy); anything else is ErrNoHeader. The zero value.
	Require Policy = iota
	// Allow: a header is read and used when the connection begins with
	// one; a connection that begins otherwise goes on with its own
	// addresses, its bytes untouched.
	Allow
	// Ignore: a header is read and removed but not used (ReadHeader
	// returns a nil Header); a connection without one goes on untouched.
	Ignore
	// Reject: a header is an error (ErrUnexpectedHeader); a connection
	// without one goes on untouched.
	Reject
	// Skip: nothing is read or waited for; the connection goes on as it is
	// (a header, if one comes, reaches the application as data).
	Skip
)

var policyNames = [...]string{"require", "allow", "ignore", "reject", "skip"}

// String returns "require", "allow", "ignore", "reject" or "skip".
func (p Policy) String() string {
	if int(p) < len(policyNames) {
		return policyNames[p]
	}
	return "Policy(" + strconv.Itoa(int(p)) + ")"
}

// Rule gives the policy for the sources in Prefix.
type Rule struct {
	Prefix netip.Prefix
	Policy Policy
}

// Defaults used for zero Reader fields.
const (
	// DefaultTimeout: the PROXY protocol asks receivers to wait at least 3
	// s (a TCP retransmit) for a header.
	DefaultTimeout = 5 * time.Second
	// DefaultMaxHeaderLen bounds a version 2 header (a v1 line is at most
	// 107 bytes); it is HAProxy's default buffer size.
	DefaultMaxHeaderLen = 16 << 10
)

// Reader reads the PROXY protocol header at the start of accepted
// connections. The zero value requires a header from every source and
// waits at most DefaultTimeout for it. A Reader is safe for concurrent use
// and must not be modified while in use.
type Reader struct {
	// Rules give the policy per source address: the rule with the longest
	// prefix that contains the connection's remote address wins (the
	// first among equals). IPv4 sources are matched as IPv4 addresses,
	// also when they arrive IPv4-mapped on an IPv6 socket.
	Rules []Rule
	// Default is the policy for sources no rule covers (and connections
	// without an IP remote address). The zero value is Require.
	Default Policy
	// Timeout bounds the wait for a complete header. 0 means
	// DefaultTimeout; a negative value means none (the context still
	// bounds it).
	Timeout time.Duration
	// MaxHeaderLen bounds a version 2 header, in bytes. 0 means
	// DefaultMaxHeaderLen; at most MaxV2Len counts.
	MaxHeaderLen int
}

// PolicyFor returns the policy for connections from a.
func (r *Reader) PolicyFor(a netip.Addr) Policy {
	a = a.Unmap()
	best, pol := -1, r.Default
	for _, rule := range r.Rules {
		if rule.Prefix.Bits() > best && rule.Prefix.Contains(a) {
			best, pol = rule.Prefix.Bits(), rule.Policy
		}
	}
	return pol
}

func (r *Reader) timeout() time.Duration {
	if r.Timeout == 0 {
		return DefaultTimeout
	}
	return r.Timeout
}

func (r *Reader) maxLen() int {
	if r.MaxHeaderLen <= 0 {
		return DefaultMaxHeaderLen
	}
	return min(r.MaxHeaderLen, MaxV2Len)
}

// result is what one read of a header saw.
type result struct {
	n        int     // bytes seen: peeked, or consumed on the read path
	sure     bool    // those bytes are certainly a header (surelyHeader)
	hl       int     // header length, when known
	v        verdict // scan's last verdict
	err      error   // the header is invalid (scan or parse)
	hdr      *Header // the header, when v == complete and err == nil
	eof      bool    // the peer closed
	ioErr    error   // a read failed (a deadline included)
	readPath bool    // bytes were consumed into b
	b        []byte  // the bytes consumed on the read path
}

// ReadHeader reads the PROXY header at the start of c, as the policy for
// c's remote address says, and returns the connection to go on with: the
// one to run protocol detection on, to serve or to splice. With no error
// the Header is the one read (nil when there was none, or when the policy
// is Ignore); use its addresses only when Header.Proxied reports true.
//
// On Linux, for a *net.TCPConn, the header is peeked (recv(MSG_PEEK)) and
// then exactly its bytes are consumed, so the connection returned is c
// itself: detect's MSG_PEEK detection, splice(2), CloseWrite and
// SO_ORIGINAL_DST keep working on it. Any other connection is read, and
// when more bytes were read than the header (or no header came) the
// returned connection replays them before reading from c; it keeps io.Copy
// and the splice package on the fast path (WriteTo, ReadFrom, and the
// Buffered and NetConn of splice.Unwrapper). A version 2 header on such a
// connection is read to its exact length, so then c itself comes back.
//
// ReadHeader waits for the first bytes (up to the Reader's timeout and
// ctx) under every policy but Skip: a connection whose server speaks first
// waits that long under Allow, Ignore and Reject too. A connection that
// stays silent until the timeout, or closes, has no header: an error under
// Require (ErrTimeout, ErrNoHeader), none under the other policies. It
// uses c's read deadline and clears it before returning.
//
// The error is an [*Error]. The returned connection is never nil; after an
// error the caller should close it.
func (r *Reader) ReadHeader(ctx context.Context, c net.Conn) (net.Conn, *Header, error) {
	src := remoteAddrPort(c)
	pol := r.PolicyFor(src.Addr())
	if pol == Skip {
		return c, nil, nil
	}
	if err := ctx.Err(); err != nil {
		return c, nil, &Error{Kind: err, Source: src}
	}
	g := setDeadline(ctx, c, r.timeout())
	var res result
	if !peekHeader(c, r.maxLen(), pol, &res) {
		readHeader(c, r.maxLen(), &res)
	}
	cancelled := g.finish()
	return decide(ctx, c, src, pol, &res, cancelled)
}

// decide turns what was seen into ReadHeader's answer.
func decide(ctx context.Context, c net.Conn, src netip.AddrPort, pol Policy, res *result, cancelled bool) (net.Conn, *Header, error) {
	out := c
	if res.readPath {
		rest := res.b
		if res.v == complete && res.err == nil && pol != Reject {
			rest = rest[res.hl:]
		}
		if len(rest) > 0 {
			out = replay.New(c, rest)
		}
	}
	fail := func(kind error, detail string, cause error) (net.Conn, *Header, error) {
		return out, nil, &Error{Kind: kind, Detail: detail, Source: src, Err: cause}
	}
	if res.err != nil {
		var e *Error
		if errors.As(res.err, &e) {
			return fail(e.Kind, e.Detail, e.Err)
		}
		return fail(ErrInvalid, "", res.err)
	}
	if res.v == complete {
		switch {
		case pol == Reject:
			return fail(ErrUnexpectedHeader, "v"+strconv.Itoa(int(res.hdr.Version)), nil)
		case res.ioErr != nil: // consuming the peeked header failed
			return fail(ErrRead, "", res.ioErr)
		case pol == Ignore:
			return out, nil, nil
		}
		return out, res.hdr, nil
	}
	if cancelled || ctx.Err() != nil {
		err := ctx.Err()
		if err == nil {
			err = context.Canceled
		}
		return fail(err, "", nil)
	}
	if res.v == notHeader {
		if pol == Require {
			return fail(ErrNoHeader, "", nil)
		}
		return out, nil, nil
	}
	// No complete header: the peer closed, the timeout passed or a read
	// failed. Silence, or a prefix that may be something else, is no
	// header; only Require wants one.
	mustErr := res.sure || pol == Require
	switch {
	case res.ioErr != nil && errors.Is(res.ioErr, os.ErrDeadlineExceeded):
		if mustErr {
			return fail(ErrTimeout, "after "+strconv.Itoa(res.n)+" bytes", res.ioErr)
		}
	case res.ioErr != nil:
		return fail(ErrRead, "", res.ioErr)
	case res.n == 0:
		if pol == Require {
			return fail(ErrNoHeader, "the peer closed without sending", io.EOF)
		}
	default:
		if mustErr {
			return fail(ErrTruncated, "the peer closed after "+strconv.Itoa(res.n)+" bytes", io.EOF)
		}
	}
	return out, nil, nil
}

// readHeader reads (consuming) from c until a header is complete, the bytes
// cannot be one, the peer closes, or a read fails. It reads a version 2
// header to its exact length.
func readHeader(c net.Conn, max int, res *result) {
	res.readPath = true
	buf := make([]byte, 0, 256)
	want := v2FixedLen // read no further than this
	for zero := 0; ; {
		if want > cap(buf) {
			buf = append(make([]byte, 0, want), buf...)
		}
		n, err := c.Read(buf[len(buf):want])
		buf = buf[:len(buf)+n]
		if n > 0 {
			zero = 0
			hl, v, serr := scan(buf, max)
			res.hl, res.v = hl, v
			if serr != nil {
				res.err = serr
				break
			}
			if v == complete {
				res.hdr, res.err = parseHeader(buf[:hl])
				break
			}
			if v == notHeader {
				break
			}
			switch {
			case hl > 0:
				want = hl
			case buf[0] == v1Prefix[0]:
				want = v1MaxLen
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				res.eof = true
			} else {
				res.ioErr = err
			}
			break
		}
		if n == 0 {
			if zero++; zero > 100 {
				res.ioErr = io.ErrNoProgress
				break
			}
		}
	}
	res.b = buf
	res.n = len(buf)
	res.sure = res.v == needMore && surelyHeader(buf)
}

func remoteAddrPort(c net.Conn) netip.AddrPort {
	var ap netip.AddrPort
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		return ap
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// guard sets a read deadline for the header and clears it after, and makes
// a cancellation of ctx interrupt a blocked read (by moving the deadline
// into the past) without ever leaving that deadline behind.
type guard struct {
	c       net.Conn
	touched bool // a deadline was set
	ctx     *ctxGuard
	stop    func() bool
}

type ctxGuard struct {
	c      net.Conn
	mu     sync.Mutex
	fired  bool
	ending bool
}

// aLongTimeAgo is a deadline in the past that makes a blocked read return.
var aLongTimeAgo = time.Unix(1, 0)

func (g *ctxGuard) fire() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ending {
		return
	}
	g.fired = true
	_ = g.c.SetReadDeadline(aLongTimeAgo)
}

func setDeadline(ctx context.Context, c net.Conn, timeout time.Duration) guard {
	g := guard{c: c}
	if timeout > 0 {
		g.touched = true
		_ = c.SetReadDeadline(time.Now().Add(timeout))
	}
	if ctx.Done() != nil {
		g.ctx = &ctxGuard{c: c}
		g.stop = context.AfterFunc(ctx, g.ctx.fire)
	}
	return g
}

// finish clears the deadline; it reports whether ctx interrupted the read.
func (g guard) finish() (cancelled bool) {
	if g.ctx != nil {
		g.stop()
		g.ctx.mu.Lock()
		g.ctx.ending = true
		cancelled = g.ctx.fired
		g.ctx.mu.Unlock()
	}
	if g.touched || cancelled {
		_ = g.c.SetReadDeadline(time.Time{})
	}
	return cancelled
}
