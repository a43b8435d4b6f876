package detect

import (
	"errors"
	"time"
)

// Protocol names a detected protocol. It is an open set: a user's own [Matcher] may return any
// value, e.g. Protocol("ssh-custom").
type Protocol string

// Protocols named by the built-in matchers.
const (
	Unknown    Protocol = "unknown"    // nothing matched; proxy the bytes opaque
	HTTP1      Protocol = "HTTP/1"     // an HTTP/1.x request line
	HTTP2      Protocol = "HTTP/2"     // the HTTP/2 connection preface (prior knowledge, h2c)
	GRPC       Protocol = "gRPC"       // HTTP/2 whose first HEADERS carry content-type application/grpc[+...]
	TLS        Protocol = "TLS"        // a TLS ClientHello
	PROXY      Protocol = "PROXY"      // PROXY protocol v1 or v2 header (opt-in matcher)
	SSH        Protocol = "SSH"        // SSH client identification string (opt-in matcher)
	PostgreSQL Protocol = "PostgreSQL" // PostgreSQL SSLRequest, GSSENCRequest, CancelRequest or StartupMessage (opt-in matcher)
)

// String returns the protocol name.
func (p Protocol) String() string { return string(p) }

// Reason says why detection ended.
type Reason uint8

// Reasons detection ends.
const (
	ReasonMatched     Reason = iota // a matcher said yes
	ReasonNoMatch                   // every matcher said no
	ReasonTimeout                   // the detection timeout fired (Result.Protocol == Unknown)
	ReasonClosed                    // the peer closed (EOF) before a decision
	ReasonLimit                     // the peek limit was reached undecided
	ReasonServerFirst               // the upstream spoke first (see DetectUpstream)
)

var reasonNames = [...]string{"matched", "no_match", "timeout", "closed", "limit", "server_first"}

// String returns a short lower-case name fit for a metric label: "matched", "no_match", "timeout",
// "closed", "limit" or "server_first".
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Verdict is a matcher's answer about the bytes seen so far.
type Verdict uint8

// Matcher answers.
const (
	NeedMore Verdict = iota // cannot tell yet; show me more bytes
	Match                   // these bytes are my protocol
	NoMatch                 // these bytes can never be my protocol
)

// String returns "need_more", "match" or "no_match".
func (v Verdict) String() string {
	switch v {
	case NeedMore:
		return "need_more"
	case Match:
		return "match"
	case NoMatch:
		return "no_match"
	}
	return "invalid"
}

// Matcher recognises one protocol from the first bytes a client sends.
//
// Match is called with every byte peeked so far; b only grows between calls on one connection, and
// a Matcher must be monotonic: once it returns Match or NoMatch for a prefix it must return the
// same for any extension of it. Match must not retain b, must be safe for concurrent use, and may
// write protocol details into r only when it returns Match.
type Matcher interface {
	// Protocol is the protocol reported when Match returns Match.
	Protocol() Protocol
	// Match looks at every byte peeked so far (b grows between calls) and may fill protocol details
	// into r when it returns Match.
	Match(b []byte, r *Result) Verdict
}

// Result is the outcome of one detection.
type Result struct {
	Protocol Protocol      // Unknown unless a matcher matched
	Reason   Reason        // why detection ended
	Bytes    int           // bytes examined
	Duration time.Duration // time spent detecting
	HTTP     HTTPInfo      // set for HTTP/1 (Method always; Host when already peeked)
	TLS      TLSInfo       // set for TLS
	// PROXYVersion is the PROXY protocol version of the header PROXYMatcher matched (1 for the
	// text line, 2 for the binary header); 0 for other protocols. Package proxyproto parses it.
	PROXYVersion uint8
}

// maxHost is the longest Host header value kept in [HTTPInfo].
const maxHost = 255

// HTTPInfo describes an HTTP/1 request line (and Host header when it was already among the peeked
// bytes). It is stored inline so that detection allocates nothing; the accessor methods allocate.
type HTTPInfo struct {
	// Method is the request method, an interned constant such as "GET" (assigning it allocates
	// nothing).
	Method string

	host    [maxHost]byte
	hostLen uint8
}

// Host returns the value of the Host header when it was among the peeked bytes, else "". Values
// longer than 255 bytes are not kept.
func (h HTTPInfo) Host() string { return string(h.host[:h.hostLen]) }

// NewHTTPInfo returns the HTTPInfo detection reports for a request with this method and Host
// header value: for callers that keep a Result in a smaller form and rebuild it, and for tests of
// code that consumes Results. A host longer than 255 bytes is not kept, as in detection.
func NewHTTPInfo(method, host string) HTTPInfo {
	h := HTTPInfo{Method: method}
	if len(host) <= maxHost {
		h.hostLen = uint8(copy(h.host[:], host))
	}
	return h
}

// Limits of what TLSInfo keeps inline.
const (
	maxSNI      = 255
	maxALPN     = 256 // bytes of the wire-format ALPN list (length-prefixed names)
	maxVersions = 16
)

// TLSInfo describes a TLS ClientHello. It is stored inline so that detection allocates nothing; the
// accessor methods that return strings or slices allocate.
type TLSInfo struct {
	// LegacyVersion is the ClientHello's legacy_version field (0x0303 for TLS 1.2 and 1.3 clients).
	LegacyVersion uint16

	sni       [maxSNI]byte
	sniLen    uint8
	alpn      [maxALPN]byte // wire format: repeated (u8 length, name)
	alpnLen   uint16
	versions  [maxVersions]uint16
	nVersions uint8
}

// ServerName returns the host_name of the server_name extension (SNI), or "" when absent or longer
// than 255 bytes.
func (t TLSInfo) ServerName() string { return string(t.sni[:t.sniLen]) }

// ALPN returns the protocol names the client offered in the ALPN extension, in its order. Names
// beyond the first 256 bytes of the list are not kept.
func (t TLSInfo) ALPN() []string {
	var out []string
	for b := t.alpn[:t.alpnLen]; len(b) > 0; {
		n := int(b[0])
		out = append(out, string(b[1:1+n]))
		b = b[1+n:]
	}
	return out
}

// HasALPN reports whether the client offered proto in its ALPN extension. It allocates nothing.
func (t TLSInfo) HasALPN(proto string) bool {
	for b := t.alpn[:t.alpnLen]; len(b) > 0; {
		n := int(b[0])
		if string(b[1:1+n]) == proto {
			return true
		}
		b = b[1+n:]
	}
	return false
}

// Versions returns the TLS versions the client offers: the supported_versions extension without
// GREASE values (at most 16), or the legacy version alone when the extension is absent.
func (t TLSInfo) Versions() []uint16 {
	if t.nVersions == 0 {
		if t.LegacyVersion == 0 {
			return nil
		}
		return []uint16{t.LegacyVersion}
	}
	return append([]uint16(nil), t.versions[:t.nVersions]...)
}

// SupportsVersion reports whether v is among [TLSInfo.Versions]. It allocates nothing.
func (t TLSInfo) SupportsVersion(v uint16) bool {
	if t.nVersions == 0 {
		return v == t.LegacyVersion && v != 0
	}
	for _, x := range t.versions[:t.nVersions] {
		if x == v {
			return true
		}
	}
	return false
}

// GRPCMode selects how the Detector tells gRPC from other HTTP/2.
type GRPCMode uint8

// gRPC refinement modes.
const (
	// GRPCOff reports HTTP/2 prior knowledge as HTTP2 (the zero value).
	GRPCOff GRPCMode = iota
	// GRPCPassive keeps peeking after the preface for at most Detector.GRPCWait for the first
	// HEADERS frame and reports GRPC when its content-type is application/grpc[+...]. It writes
	// nothing and consumes nothing, but clients that wait for the server's SETTINGS before sending
	// HEADERS (grpc-go, grpcio, grpc-java) are reported as HTTP2 after the wait.
	GRPCPassive
	// GRPCActive writes one empty server SETTINGS frame after the preface, reads up to the first
	// HEADERS frame (for at most Detector.GRPCWait) and removes the client's SETTINGS ACK of that
	// frame from the bytes handed back, so the HTTP/2 server that later serves the connection sees
	// an ordinary one. The ACK may come after detection ends (a client may send a window of DATA
	// first): the returned [ReplayConn] then drops it from later reads. It consumes bytes, so
	// Detect returns a ReplayConn.
	GRPCActive
)

// String returns "off", "passive" or "active".
func (m GRPCMode) String() string {
	switch m {
	case GRPCOff:
		return "off"
	case GRPCPassive:
		return "passive"
	case GRPCActive:
		return "active"
	}
	return "invalid"
}

// Defaults used for zero Detector fields.
const (
	DefaultTimeout  = 10 * time.Second       // Detector.Timeout == 0
	DefaultMaxPeek  = 16 << 10               // Detector.MaxPeek == 0
	DefaultGRPCWait = 200 * time.Millisecond // Detector.GRPCWait == 0
)

// ErrNoProgress is returned by Detect when the connection's Read keeps returning no bytes and no
// error.
var ErrNoProgress = errors.New("detect: connection read made no progress")

// Detector peeks at the first bytes of connections and classifies them. The zero value is ready to
// use: it detects HTTP/2 prior knowledge, HTTP/1 and TLS with a 10 s timeout and a 16 KiB peek
// limit.
//
// Build a Detector once and share it: it is safe for concurrent use, and its OnResult hook (with
// whatever state the hook keeps, such as the metrics package's cache) lasts across calls. What
// changes from one connection to the next, such as the detection timeout a port's policy gives, is
// an [Option] of the call. A Detector must not be modified while Detect runs.
type Detector struct {
	// Matchers are tried in order; the first one that matches wins once every matcher before it has
	// said no. nil means DefaultMatchers().
	Matchers []Matcher
	// Timeout bounds detection unless the call gives [WithTimeout]. 0 means DefaultTimeout (10 s);
	// a negative value means no timeout. When it fires, Detect returns a Result with Protocol
	// Unknown and Reason ReasonTimeout and a nil error, and the connection stays open and usable.
	Timeout time.Duration
	// MaxPeek is the most bytes examined. 0 means DefaultMaxPeek (16 KiB).
	MaxPeek int
	// OnResult, when not nil, is called once per Detect with the final Result (metrics hook),
	// before Detect returns that same Result. It must not block. The pointer is valid only during
	// the call: the hook must neither keep it nor modify the Result; copy *r to keep it. (A
	// pointer, because a Result is ~864 bytes.)
	OnResult func(r *Result)
	// GRPC enables telling gRPC from other HTTP/2 (GRPCOff by default).
	GRPC GRPCMode
	// GRPCWait bounds how long the gRPC refinement waits for the first HEADERS frame after the
	// preface (after writing SETTINGS in active mode). 0 means DefaultGRPCWait. Active mode does
	// not wait for the client's ACK of the detector's SETTINGS: the returned [ReplayConn] drops it
	// whenever it comes.
	GRPCWait time.Duration
}

// An Option changes one Detect call, over the Detector's setting of the same name. Options are
// plain values: passing them allocates nothing.
type Option struct {
	timeout time.Duration // 0: the Detector's
}

// WithTimeout bounds this call's detection instead of Detector.Timeout: t > 0 is the timeout, t < 0
// means none, 0 keeps the Detector's. A proxy whose policy gives each port its own timeout
// (opaque.Decision.DetectTimeout) builds one Detector and passes the port's timeout per call.
func WithTimeout(t time.Duration) Option { return Option{timeout: t} }

// callTimeout is the detection timeout of one call (<= 0: none).
func (d *Detector) callTimeout(opts []Option) time.Duration {
	t := d.timeout()
	for _, o := range opts {
		if o.timeout != 0 {
			t = o.timeout
		}
	}
	return t
}

// matcherFunc adapts a function to the Matcher interface.
type matcherFunc struct {
	p Protocol
	f func(b []byte, r *Result) Verdict
}

func (m matcherFunc) Protocol() Protocol                { return m.p }
func (m matcherFunc) Match(b []byte, r *Result) Verdict { return m.f(b, r) }

// NewMatcher returns a Matcher for protocol p that calls match; match must follow the rules of
// [Matcher.Match].
func NewMatcher(p Protocol, match func(b []byte, r *Result) Verdict) Matcher {
	return matcherFunc{p: p, f: match}
}
