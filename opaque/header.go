package opaque

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// ALPN is the TLS application protocol that a proxy offers when it opens an opaque connection to a
// peer proxy's inbound port; the transport header follows the TLS handshake.
const ALPN = "transport.l5d.io/v1"

// DefaultInboundPort is the peer proxy's inbound port that opaque connections (inside mutual TLS,
// starting with a transport header) are sent to.
const DefaultInboundPort = 4143

// headerPreface is the fixed start of a transport header, followed by a 4-byte big-endian message
// length and the protobuf message.
const headerPreface = "transport.l5d.io/v1\r\n\r\n"

const (
	prefaceLen = len(headerPreface)
	fixedLen   = prefaceLen + 4

	// DefaultMaxHeaderLen bounds the protobuf message of a header that is read when
	// HeaderCodec.MaxLen is zero. A valid header is at most a few hundred bytes (a 253-byte name is
	// the largest part).
	DefaultMaxHeaderLen = 1024

	// maxDNSName is the longest DNS name in text form, without a trailing dot.
	maxDNSName = 253
)

// SessionProtocol is the protocol that a header announces for the connection it starts.
type SessionProtocol uint8

const (
	// SessionNone announces nothing: the inbound side handles the connection as opaque bytes.
	SessionNone SessionProtocol = iota
	// SessionHTTP1 announces HTTP/1.
	SessionHTTP1
	// SessionHTTP2 announces HTTP/2 (prior knowledge).
	SessionHTTP2
)

// String returns "none", "HTTP/1" or "HTTP/2".
func (s SessionProtocol) String() string {
	switch s {
	case SessionNone:
		return "none"
	case SessionHTTP1:
		return "HTTP/1"
	case SessionHTTP2:
		return "HTTP/2"
	}
	return "SessionProtocol(" + strconv.Itoa(int(s)) + ")"
}

// Header is the transport header that starts an opaque connection between two proxies, in Linkerd's
// wire format:
//
//	"transport.l5d.io/v1\r\n\r\n"  preface, 23 bytes
//	uint32, big-endian             length of the message that follows
//	protobuf message transport.l5d.io.Header {
//	    int32 port = 1;                        // the real target port
//	    string name = 2;                       // optional DNS name (gateways)
//	    SessionProtocol session_protocol = 3;  // oneof kind { Http1 http1 = 1; Http2 http2 = 2; }
//	}
//
// A header naming port 3306 alone is 30 bytes.
type Header struct {
	Port            uint16          // target port, 1-65535
	Name            string          // "" or a DNS name
	SessionProtocol SessionProtocol // SessionNone: opaque
}

// RejectReason says why a header could not be read or written. Its String is a short snake_case
// word suitable as a metrics label.
type RejectReason uint8

const (
	RejectNoPreface   RejectReason = iota + 1 // the bytes are not a transport header
	RejectShort                               // the peer closed before the header ended
	RejectBadProtobuf                         // the message is not valid protobuf for Header
	RejectBadPort                             // port 0, negative or above 65535
	RejectBadName                             // the name is not a DNS name
	RejectTooLong                             // the length field exceeds the limit
	RejectTimeout                             // the read deadline or context deadline passed
	RejectCanceled                            // the context was canceled
	RejectIO                                  // another read or write error
)

var rejectNames = [...]string{
	RejectNoPreface:   "no_preface",
	RejectShort:       "short_read",
	RejectBadProtobuf: "bad_protobuf",
	RejectBadPort:     "bad_port",
	RejectBadName:     "bad_name",
	RejectTooLong:     "too_long",
	RejectTimeout:     "timeout",
	RejectCanceled:    "canceled",
	RejectIO:          "io_error",
}

// String returns the label: "no_preface", "short_read", "bad_protobuf", "bad_port", "bad_name",
// "too_long", "timeout", "canceled" or "io_error".
func (r RejectReason) String() string {
	if int(r) < len(rejectNames) && rejectNames[r] != "" {
		return rejectNames[r]
	}
	return "RejectReason(" + strconv.Itoa(int(r)) + ")"
}

// Sentinel errors for header failures; a *HeaderError matches the one of its Reason with errors.Is.
// Timeouts and cancellation match os.ErrDeadlineExceeded or the context's error instead (through
// Err).
var (
	ErrNoPreface     = errors.New("no transport header preface")
	ErrShortHeader   = errors.New("connection ended inside the transport header")
	ErrBadProtobuf   = errors.New("transport header is not a valid protobuf message")
	ErrBadPort       = errors.New("transport header port is not in 1-65535")
	ErrBadName       = errors.New("transport header name is not a DNS name")
	ErrHeaderTooLong = errors.New("transport header is longer than allowed")
	errTimeout       = errors.New("timed out reading the transport header")
	errCanceled      = errors.New("canceled reading the transport header")
	errIO            = errors.New("i/o error on the transport header")
	reasonSentinels  = [...]error{nil, ErrNoPreface, ErrShortHeader, ErrBadProtobuf, ErrBadPort, ErrBadName, ErrHeaderTooLong, errTimeout, errCanceled, errIO}
	aLongTimeAgo     = time.Unix(1, 0)
)

// HeaderError is the error for a header that could not be read or written.
type HeaderError struct {
	Reason RejectReason
	// Detail says more, e.g. which field is bad; may be empty.
	Detail string
	// Err is the underlying error where there is one (io.ErrUnexpectedEOF, os.ErrDeadlineExceeded,
	// context.Canceled, a protowire error, ...).
	Err error
	// Read holds the bytes consumed before a RejectNoPreface was decided, so the caller can still
	// use them (they are gone from the connection).
	Read []byte
}

// Error describes the problem, naming what was rejected.
func (e *HeaderError) Error() string {
	s := prefix + reasonSentinels[e.reason()].Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + unprefixed(e.Err)
	}
	return s
}

func (e *HeaderError) reason() RejectReason {
	if int(e.Reason) < len(reasonSentinels) && e.Reason != 0 {
		return e.Reason
	}
	return RejectIO
}

// Is matches the sentinel of the error's Reason (ErrNoPreface, ...).
func (e *HeaderError) Is(target error) bool {
	return target != nil && target == reasonSentinels[e.reason()]
}

// Unwrap returns the underlying error, if any.
func (e *HeaderError) Unwrap() error { return e.Err }

// HeaderObserver is told about every header a HeaderCodec writes, reads or rejects, so that metrics
// can count them. Its methods must be cheap and safe for concurrent use; they run on the
// connection's goroutine.
type HeaderObserver interface {
	HeaderWritten(h Header, n int) // n: bytes written
	HeaderRead(h Header, n int)    // n: bytes consumed
	HeaderRejected(r RejectReason) // on read and on write
}

// HeaderCodec writes and reads transport headers. The zero value is ready to use: no timeout,
// DefaultMaxHeaderLen, no observer. A HeaderCodec is safe for concurrent use.
type HeaderCodec struct {
	// MaxLen bounds the length field of a header that is read; a longer one is rejected
	// (RejectTooLong) before anything is allocated. 0 means DefaultMaxHeaderLen; values above 65536
	// are treated as 65536.
	MaxLen int
	// Timeout bounds ReadContext when the conn supports deadlines; 0: none beyond the context's
	// deadline.
	Timeout time.Duration
	// Observer, if not nil, counts headers written, read and rejected.
	Observer HeaderObserver
}

// validate checks h before encoding.
func (h Header) validate() error {
	if h.Port == 0 {
		return &HeaderError{Reason: RejectBadPort, Detail: "port 0"}
	}
	if h.Name != "" && !isDNSName(h.Name) {
		return &HeaderError{Reason: RejectBadName, Detail: strconv.Quote(truncate(h.Name))}
	}
	if h.SessionProtocol > SessionHTTP2 {
		return &HeaderError{Reason: RejectBadProtobuf, Detail: "unknown session protocol " + h.SessionProtocol.String()}
	}
	return nil
}

// messageLen is the length of h's protobuf message.
func (h Header) messageLen() int {
	n := protowire.SizeTag(1) + protowire.SizeVarint(uint64(h.Port))
	if h.Name != "" {
		n += protowire.SizeTag(2) + protowire.SizeBytes(len(h.Name))
	}
	if h.SessionProtocol != SessionNone {
		n += protowire.SizeTag(3) + protowire.SizeBytes(protowire.SizeTag(1)+protowire.SizeBytes(0))
	}
	return n
}

// EncodedLen returns the number of bytes AppendBinary appends for a valid h.
func (h Header) EncodedLen() int { return fixedLen + h.messageLen() }

// AppendBinary appends the encoded header (preface, length, message) to b. It fails with a
// *HeaderError for port 0, a name that is not a DNS name or an unknown session protocol. It
// implements encoding.BinaryAppender.
func (h Header) AppendBinary(b []byte) ([]byte, error) {
	if err := h.validate(); err != nil {
		return b, err
	}
	b = append(b, headerPreface...)
	b = binary.BigEndian.AppendUint32(b, uint32(h.messageLen()))
	// port is an int32 field; a uint16 is never negative, so the varint is the plain value.
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(h.Port))
	if h.Name != "" {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, h.Name)
	}
	if h.SessionProtocol != SessionNone {
		var kind protowire.Number = 1 // http1
		if h.SessionProtocol == SessionHTTP2 {
			kind = 2 // http2
		}
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(protowire.SizeTag(kind)+protowire.SizeBytes(0)))
		b = protowire.AppendTag(b, kind, protowire.BytesType)
		b = protowire.AppendVarint(b, 0) // empty Http1/Http2 message
	}
	return b, nil
}

// MarshalBinary returns the encoded header; see AppendBinary.
func (h Header) MarshalBinary() ([]byte, error) {
	return h.AppendBinary(make([]byte, 0, h.EncodedLen()))
}

// UnmarshalBinary decodes a complete encoded header (preface, length and message, nothing after
// it).
func (h *Header) UnmarshalBinary(data []byte) error {
	if len(data) < fixedLen {
		if k := min(len(data), prefaceLen); string(data[:k]) != headerPreface[:k] {
			return &HeaderError{Reason: RejectNoPreface}
		}
		return &HeaderError{Reason: RejectShort, Err: io.ErrUnexpectedEOF}
	}
	if string(data[:prefaceLen]) != headerPreface {
		return &HeaderError{Reason: RejectNoPreface}
	}
	n := binary.BigEndian.Uint32(data[prefaceLen:fixedLen])
	msg := data[fixedLen:]
	switch {
	case uint64(n) > uint64(len(msg)):
		return &HeaderError{Reason: RejectShort, Err: io.ErrUnexpectedEOF}
	case uint64(n) < uint64(len(msg)):
		return &HeaderError{Reason: RejectBadProtobuf, Detail: strconv.Itoa(len(msg)-int(n)) + " bytes after the message"}
	}
	hh, err := decodeMessage(msg)
	if err != nil {
		return err
	}
	*h = hh
	return nil
}

// decodeMessage parses the protobuf message. Like any protobuf decoder it skips unknown fields and
// lets a later occurrence of a field win.
func decodeMessage(msg []byte) (Header, error) {
	var (
		h       Header
		port    int32
		name    []byte
		hasName bool
	)
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return Header{}, protoErr("tag", n)
		}
		msg = msg[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(msg)
			if n < 0 {
				return Header{}, protoErr("port", n)
			}
			port = int32(v) // int32 semantics: truncate to 32 bits
			msg = msg[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(msg)
			if n < 0 {
				return Header{}, protoErr("name", n)
			}
			name, hasName = v, true
			msg = msg[n:]
		case num == 3 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(msg)
			if n < 0 {
				return Header{}, protoErr("session_protocol", n)
			}
			sp, err := decodeSessionProtocol(v, h.SessionProtocol)
			if err != nil {
				return Header{}, err
			}
			h.SessionProtocol = sp
			msg = msg[n:]
		case num == 1 || num == 2 || num == 3:
			return Header{}, &HeaderError{Reason: RejectBadProtobuf, Detail: "field " + strconv.Itoa(int(num)) + " has wire type " + strconv.Itoa(int(typ))}
		default:
			n := protowire.ConsumeFieldValue(num, typ, msg)
			if n < 0 {
				return Header{}, protoErr("unknown field "+strconv.Itoa(int(num)), n)
			}
			msg = msg[n:]
		}
	}
	if port <= 0 || port > 65535 {
		return Header{}, &HeaderError{Reason: RejectBadPort, Detail: "port " + strconv.Itoa(int(port))}
	}
	h.Port = uint16(port)
	if hasName && len(name) > 0 {
		ns := string(name)
		if !isDNSName(ns) {
			return Header{}, &HeaderError{Reason: RejectBadName, Detail: strconv.Quote(truncate(ns))}
		}
		h.Name = ns
	}
	return h, nil
}

// decodeSessionProtocol parses a SessionProtocol message. Protobuf merges repeated occurrences of a
// message field, so prev is kept when this one sets no kind.
func decodeSessionProtocol(msg []byte, prev SessionProtocol) (SessionProtocol, error) {
	sp := prev
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return 0, protoErr("session_protocol tag", n)
		}
		msg = msg[n:]
		if (num == 1 || num == 2) && typ != protowire.BytesType {
			return 0, &HeaderError{Reason: RejectBadProtobuf, Detail: "session_protocol field " + strconv.Itoa(int(num)) + " has wire type " + strconv.Itoa(int(typ))}
		}
		if num == 1 || num == 2 {
			v, n := protowire.ConsumeBytes(msg)
			if n < 0 {
				return 0, protoErr("session_protocol kind", n)
			}
			if err := skipMessage(v); err != nil {
				return 0, err
			}
			msg = msg[n:]
			sp = SessionHTTP1
			if num == 2 {
				sp = SessionHTTP2
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, msg)
		if n < 0 {
			return 0, protoErr("session_protocol unknown field", n)
		}
		msg = msg[n:]
	}
	return sp, nil
}

// skipMessage checks that msg is well-formed protobuf (all fields unknown).
func skipMessage(msg []byte) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return protoErr("nested tag", n)
		}
		msg = msg[n:]
		n = protowire.ConsumeFieldValue(num, typ, msg)
		if n < 0 {
			return protoErr("nested field", n)
		}
		msg = msg[n:]
	}
	return nil
}

func protoErr(what string, n int) error {
	return &HeaderError{Reason: RejectBadProtobuf, Detail: what, Err: protowire.ParseError(n)}
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Character classes for isDNSName.
const (
	dnsBad = iota
	dnsLabel
	dnsDash
	dnsDot
)

var dnsClass = func() (t [256]uint8) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = dnsLabel, dnsLabel
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = dnsLabel
	}
	t['_'], t['-'], t['.'] = dnsLabel, dnsDash, dnsDot
	return t
}()

// isDNSName reports whether s is a DNS name as the transport header accepts it: at most 253
// characters (plus an optional final dot), labels of 1-63 ASCII letters, digits, '-' or '_', no
// label starting or ending with '-'.
func isDNSName(s string) bool {
	if len(s) > 0 && s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	if len(s) == 0 || len(s) > maxDNSName {
		return false
	}
	label := 0 // length of the current label
	prev := uint8(dnsDot)
	for i := 0; i < len(s); i++ {
		cl := dnsClass[s[i]]
		switch cl {
		case dnsBad:
			return false
		case dnsDot:
			if prev != dnsLabel {
				return false // empty label, or label ending with '-'
			}
			label = 0
		case dnsDash:
			if prev == dnsDot {
				return false // label starting with '-'
			}
			label++
		default:
			label++
		}
		if label > 63 {
			return false
		}
		prev = cl
	}
	return prev == dnsLabel
}

// bufPool holds buffers for encoding and decoding, so that WriteHeader and ReadHeader do not
// allocate per header.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// WriteHeader writes h to w in one Write call (one TLS record on a *tls.Conn) with the zero
// HeaderCodec.
func WriteHeader(w io.Writer, h Header) error {
	var c HeaderCodec
	_, err := c.Write(w, h)
	return err
}

// Write encodes h and writes it to w in a single Write call. It returns the number of bytes
// written.
func (c *HeaderCodec) Write(w io.Writer, h Header) (int, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	b, err := h.AppendBinary((*bp)[:0])
	if err != nil {
		c.reject(err)
		return 0, err
	}
	*bp = b[:0]
	n, err := w.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		err = &HeaderError{Reason: ioReason(err), Err: err}
		c.reject(err)
		return n, err
	}
	if c.Observer != nil {
		c.Observer.HeaderWritten(h, n)
	}
	return n, nil
}

// ReadHeader reads one transport header from r with the zero HeaderCodec. It reads exactly the
// header: the bytes after it stay in r.
func ReadHeader(r io.Reader) (Header, error) {
	var c HeaderCodec
	h, _, err := c.Read(r)
	return h, err
}

// ReadHeaderContext reads one transport header from conn with the zero HeaderCodec, giving up when
// ctx is done (see HeaderCodec.ReadContext).
func ReadHeaderContext(ctx context.Context, conn net.Conn) (Header, error) {
	var c HeaderCodec
	h, _, err := c.ReadContext(ctx, conn)
	return h, err
}

// Read reads one transport header from r and returns it with the number of bytes consumed. It reads
// exactly the header and not one byte more, so the application bytes that follow stay in r (a
// *net.TCPConn stays a *net.TCPConn, ready for splice). It reads the preface and the length first
// and rejects a length above MaxLen before allocating. Errors are *HeaderError values; on
// RejectNoPreface the consumed bytes are in HeaderError.Read.
func (c *HeaderCodec) Read(r io.Reader) (Header, int, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := (*bp)[:fixedLen]
	n, err := readPrefaced(r, buf)
	if err != nil {
		return Header{}, n, c.reject(err)
	}
	size := binary.BigEndian.Uint32(buf[prefaceLen:])
	if uint64(size) > uint64(c.maxLen()) {
		return Header{}, n, c.reject(&HeaderError{Reason: RejectTooLong, Detail: strconv.FormatUint(uint64(size), 10) + " bytes, limit " + strconv.Itoa(c.maxLen())})
	}
	if total := fixedLen + int(size); cap(*bp) < total {
		nb := make([]byte, total)
		copy(nb, buf)
		*bp = nb[:0]
	}
	msg := (*bp)[fixedLen : fixedLen+int(size)]
	m, err := readFull(r, msg, false)
	n += m
	if err != nil {
		return Header{}, n, c.reject(err)
	}
	h, err := decodeMessage(msg)
	if err != nil {
		return Header{}, n, c.reject(err)
	}
	if c.Observer != nil {
		c.Observer.HeaderRead(h, n)
	}
	return h, n, nil
}

// readPrefaced fills buf (fixedLen bytes) from r, checking the preface as the bytes arrive so that
// a peer that is not sending a header is turned away as soon as one byte differs, rather than after
// a timeout.
func readPrefaced(r io.Reader, buf []byte) (int, error) { return readFull(r, buf, true) }

// readFull is io.ReadFull that gives up on a reader that makes no progress (100 reads of 0 bytes
// and no error, as bufio does) and, with preface set, checks the bytes against headerPreface as
// they arrive. A read error is returned even after all of buf was filled only if it is not io.EOF.
func readFull(r io.Reader, buf []byte, preface bool) (int, error) {
	n, empty := 0, 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		if m < 0 || m > len(buf)-n {
			return n, &HeaderError{Reason: RejectIO, Err: errors.New("invalid Read count")}
		}
		if m == 0 && err == nil {
			if empty++; empty == 100 {
				return n, &HeaderError{Reason: RejectIO, Err: io.ErrNoProgress}
			}
			continue
		}
		empty = 0
		n += m
		if preface {
			if k := min(n, prefaceLen); string(buf[:k]) != headerPreface[:k] {
				return n, &HeaderError{Reason: RejectNoPreface, Read: append([]byte(nil), buf[:n]...)}
			}
		}
		if n == len(buf) {
			break
		}
		if err != nil {
			if err == io.EOF && (n > 0 || !preface) {
				err = io.ErrUnexpectedEOF
			}
			return n, readErr(err)
		}
	}
	return n, nil
}

// ReadContext is Read on a net.Conn that gives up when ctx is done or, if c.Timeout is set, when
// the timeout passes, whichever is first. It works with read deadlines: it sets one while reading
// and clears it (to no deadline) before returning, so a deadline the caller had set is not kept.
// The returned error matches ctx.Err() with errors.Is when ctx ended the read, and
// os.ErrDeadlineExceeded when the timeout did.
func (c *HeaderCodec) ReadContext(ctx context.Context, conn net.Conn) (Header, int, error) {
	if err := ctx.Err(); err != nil {
		return Header{}, 0, c.reject(&HeaderError{Reason: ctxReason(err), Err: err})
	}
	deadline, has := ctx.Deadline()
	if c.Timeout > 0 {
		if t := time.Now().Add(c.Timeout); !has || t.Before(deadline) {
			deadline, has = t, true
		}
	}
	if has {
		if err := conn.SetReadDeadline(deadline); err != nil {
			return Header{}, 0, c.reject(&HeaderError{Reason: RejectIO, Err: err})
		}
	}
	var fired chan struct{}
	var stop func() bool
	if ctx.Done() != nil {
		fired = make(chan struct{})
		stop = context.AfterFunc(ctx, func() {
			conn.SetReadDeadline(aLongTimeAgo) // wake the blocked Read
			close(fired)
		})
	}
	// Read through a codec without the observer so that the reason reported below can account for
	// the context.
	inner := HeaderCodec{MaxLen: c.MaxLen}
	h, n, err := inner.Read(conn)
	if stop != nil && !stop() {
		<-fired // the context ended: wait for its deadline change to land
		if err != nil {
			var he *HeaderError
			if errors.As(err, &he) && (he.Reason == RejectTimeout || he.Reason == RejectIO || he.Reason == RejectShort) {
				err = &HeaderError{Reason: ctxReason(ctx.Err()), Err: ctx.Err()}
			}
		}
	}
	if has || fired != nil {
		conn.SetReadDeadline(time.Time{})
	}
	if err != nil {
		return Header{}, n, c.reject(err)
	}
	if c.Observer != nil {
		c.Observer.HeaderRead(h, n)
	}
	return h, n, nil
}

func (c *HeaderCodec) maxLen() int {
	switch {
	case c.MaxLen <= 0:
		return DefaultMaxHeaderLen
	case c.MaxLen > 1<<16:
		return 1 << 16
	}
	return c.MaxLen
}

// reject tells the observer and returns err.
func (c *HeaderCodec) reject(err error) error {
	if c.Observer != nil {
		var he *HeaderError
		if errors.As(err, &he) {
			c.Observer.HeaderRejected(he.reason())
		} else {
			c.Observer.HeaderRejected(RejectIO)
		}
	}
	return err
}

func readErr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return &HeaderError{Reason: RejectShort, Err: err}
	}
	return &HeaderError{Reason: ioReason(err), Err: err}
}

func ioReason(err error) RejectReason {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return RejectTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return RejectTimeout
	}
	return RejectIO
}

func ctxReason(err error) RejectReason {
	if errors.Is(err, context.DeadlineExceeded) {
		return RejectTimeout
	}
	return RejectCanceled
}
