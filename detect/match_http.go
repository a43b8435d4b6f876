package detect

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

// DefaultMatchers returns the matchers a zero Detector uses, in order: HTTP/2 prior-knowledge
// preface, HTTP/1 request line, TLS ClientHello.
func DefaultMatchers() []Matcher {
	return []Matcher{HTTP2Matcher(), HTTP1Matcher(), TLSMatcher()}
}

// h2Preface is the HTTP/2 client connection preface (RFC 9113, section 3.4).
const h2Preface = h2PrefaceHead + h2PrefaceTail

// The preface in two constants of at most 16 bytes, which the compiler compares with two 8-byte
// loads each (a 24-byte compare calls memequal).
const (
	h2PrefaceHead = "PRI * HTTP/2.0\r\n"
	h2PrefaceTail = "\r\nSM\r\n\r\n"
)

type http2Matcher struct{}

// HTTP2Matcher returns the Matcher for HTTP/2 with prior knowledge: it matches the full 24-byte
// client connection preface "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" and nothing shorter.
func HTTP2Matcher() Matcher { return http2Matcher{} }

func (http2Matcher) Protocol() Protocol { return HTTP2 }

func (http2Matcher) Match(b []byte, _ *Result) Verdict {
	if len(b) >= len(h2Preface) {
		if string(b[:len(h2PrefaceHead)]) == h2PrefaceHead &&
			string(b[len(h2PrefaceHead):len(h2Preface)]) == h2PrefaceTail {
			return Match
		}
		return NoMatch
	}
	if string(b) == h2Preface[:len(b)] {
		return NeedMore
	}
	return NoMatch
}

// httpMethods are the request methods HTTP1Matcher accepts: those of RFC 9110, PATCH (RFC 5789),
// the WebDAV family (RFC 4918, 3253, 3648, 3744, 4437, 4791, 5323, 5842) and QUERY. PRI is left
// out: it only starts the HTTP/2 preface.
var httpMethods = [...]string{
	"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
	"PATCH", "QUERY",
	"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK",
	"ACL", "BASELINE-CONTROL", "BIND", "CHECKIN", "CHECKOUT", "LABEL",
	"LINK", "MERGE", "MKACTIVITY", "MKCALENDAR", "MKREDIRECTREF",
	"MKWORKSPACE", "ORDERPATCH", "REBIND", "REPORT", "SEARCH", "UNBIND",
	"UNCHECKOUT", "UNLINK", "UPDATE", "UPDATEREDIRECTREF", "VERSION-CONTROL",
}

// maxMethodLen is the length of the longest accepted method.
const maxMethodLen = len("UPDATEREDIRECTREF")

// lookupMethod returns the interned method named by tok, or "". The switch compiles to a search on
// length and value; converting tok for it does not allocate.
func lookupMethod(tok []byte) string {
	switch string(tok) {
	case "GET":
		return "GET"
	case "HEAD":
		return "HEAD"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "CONNECT":
		return "CONNECT"
	case "OPTIONS":
		return "OPTIONS"
	case "TRACE":
		return "TRACE"
	case "PATCH":
		return "PATCH"
	case "QUERY":
		return "QUERY"
	case "PROPFIND":
		return "PROPFIND"
	case "PROPPATCH":
		return "PROPPATCH"
	case "MKCOL":
		return "MKCOL"
	case "COPY":
		return "COPY"
	case "MOVE":
		return "MOVE"
	case "LOCK":
		return "LOCK"
	case "UNLOCK":
		return "UNLOCK"
	case "ACL":
		return "ACL"
	case "BASELINE-CONTROL":
		return "BASELINE-CONTROL"
	case "BIND":
		return "BIND"
	case "CHECKIN":
		return "CHECKIN"
	case "CHECKOUT":
		return "CHECKOUT"
	case "LABEL":
		return "LABEL"
	case "LINK":
		return "LINK"
	case "MERGE":
		return "MERGE"
	case "MKACTIVITY":
		return "MKACTIVITY"
	case "MKCALENDAR":
		return "MKCALENDAR"
	case "MKREDIRECTREF":
		return "MKREDIRECTREF"
	case "MKWORKSPACE":
		return "MKWORKSPACE"
	case "ORDERPATCH":
		return "ORDERPATCH"
	case "REBIND":
		return "REBIND"
	case "REPORT":
		return "REPORT"
	case "SEARCH":
		return "SEARCH"
	case "UNBIND":
		return "UNBIND"
	case "UNCHECKOUT":
		return "UNCHECKOUT"
	case "UNLINK":
		return "UNLINK"
	case "UPDATE":
		return "UPDATE"
	case "UPDATEREDIRECTREF":
		return "UPDATEREDIRECTREF"
	case "VERSION-CONTROL":
		return "VERSION-CONTROL"
	}
	return ""
}

// isMethodPrefix reports whether b is a prefix of an accepted method.
func isMethodPrefix(b []byte) bool {
	for _, m := range httpMethods {
		if len(m) >= len(b) && m[0] == b[0] && m[:len(b)] == string(b) {
			return true
		}
	}
	return false
}

type http1Matcher struct{}

// HTTP1Matcher returns the Matcher for HTTP/1.0 and HTTP/1.1 requests. It matches a complete, valid
// request line: a known method token (RFC 9110, PATCH, WebDAV), SP, a plausible request-target
// (origin, absolute, authority or asterisk form, visible ASCII), SP, "HTTP/1." DIGIT and CRLF (or a
// bare LF). It fills Result.HTTP with the method and, when the Host header is among the bytes
// already peeked, the host. A request line longer than the Detector's MaxPeek ends detection with
// ReasonLimit.
func HTTP1Matcher() Matcher { return http1Matcher{} }

func (http1Matcher) Protocol() Protocol { return HTTP1 }

func (http1Matcher) Match(b []byte, r *Result) Verdict {
	// Every accepted method starts with an upper-case letter: binary protocols (TLS, most of them)
	// fail here at once.
	if len(b) > 0 && b[0]-'A' >= 26 {
		return NoMatch
	}
	var method string
	var sp int // index of the SP after the method
	// The most common methods by one compare each, then the general path.
	switch {
	case len(b) >= 5 && string(b[:4]) == "GET ":
		method, sp = "GET", 3
	case len(b) >= 6 && string(b[:5]) == "POST ":
		method, sp = "POST", 4
	default:
		var v Verdict
		if method, sp, v = requestMethod(b); v != Match {
			return v
		}
	}
	// Request target: a plausible first byte, then visible ASCII up to SP.
	i := sp + 1
	if i >= len(b) {
		return NeedMore
	}
	if targetStart[b[i]] == 0 {
		return NoMatch
	}
	i = nonVisible(b, i+1)
	if i == len(b) {
		return NeedMore
	}
	if b[i] != ' ' {
		return NoMatch
	}
	// HTTP-version and line end.
	rest := b[i+1:]
	if len(rest) >= len("HTTP/1.1\r\n") { // fast path: the whole version is here
		if string(rest[:len(http1Version)]) != http1Version || rest[7]-'0' > 9 {
			return NoMatch
		}
		switch {
		case rest[8] == '\n':
			rest = rest[9:]
		case rest[8] == '\r' && rest[9] == '\n':
			rest = rest[10:]
		default:
			return NoMatch
		}
	} else if v := versionPrefix(rest); v != Match {
		return v
	} else {
		rest = rest[len(rest):] // a full version with LF and nothing after it
	}
	r.HTTP.Method = method
	// Host: fast path for "Host: " and a value of visible ASCII as the first header line, which is
	// what curl, browsers and Go's net/http send; findHost for the rest.
	var host []byte
	if len(rest) > len("Host: ") && string(rest[:len("Host: ")]) == "Host: " {
		if j := nonVisible(rest, len("Host: ")); j+1 < len(rest) && (rest[j] == '\n' || rest[j] == '\r' && rest[j+1] == '\n') {
			host = rest[len("Host: "):j]
		} else {
			host = findHost(rest)
		}
	} else {
		host = findHost(rest)
	}
	r.HTTP.hostLen = 0
	if len(host) <= maxHost {
		r.HTTP.hostLen = uint8(copy(r.HTTP.host[:], host))
	}
	return Match
}

// http1Version is the HTTP-version of a request line up to its last digit.
const http1Version = "HTTP/1."

// versionPrefix checks a request line's tail shorter than "HTTP/1.1\r\n": NeedMore while it is a
// prefix of one, Match for "HTTP/1.x\n" exactly, NoMatch otherwise.
func versionPrefix(rest []byte) Verdict {
	if len(rest) <= len(http1Version) {
		if string(rest) != http1Version[:len(rest)] {
			return NoMatch
		}
		return NeedMore
	}
	if string(rest[:len(http1Version)]) != http1Version || rest[7]-'0' > 9 {
		return NoMatch
	}
	switch {
	case len(rest) == 8:
		return NeedMore
	case rest[8] == '\n':
		return Match // len(rest) == 9
	case rest[8] == '\r':
		return NeedMore // the LF is not here yet
	}
	return NoMatch
}

// requestMethod reads the method token at the start of a request line. It returns the interned
// method and the index of the SP after it with Match, or NeedMore or NoMatch.
func requestMethod(b []byte) (string, int, Verdict) {
	if len(b) == 0 {
		return "", 0, NeedMore
	}
	lim := min(len(b), maxMethodLen+1)
	sp := bytes.IndexByte(b[:lim], ' ')
	if sp < 0 {
		if len(b) > maxMethodLen || !isMethodPrefix(b) {
			return "", 0, NoMatch
		}
		return "", 0, NeedMore
	}
	method := lookupMethod(b[:sp])
	if method == "" {
		return "", 0, NoMatch
	}
	return method, sp, Match
}

// targetStart marks the bytes that may begin a request-target: '/' (origin form), '*' (asterisk
// form), '[' (an IPv6 authority) and ASCII letters and digits (absolute and authority forms).
var targetStart = func() (t [256]uint8) {
	for _, c := range "/*[" {
		t[c] = 1
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = 1
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = 1
		t[c+'a'-'A'] = 1
	}
	return t
}()

// nonVisible returns the index of the first byte of b at or after i that is not visible ASCII
// (0x21-0x7e), or len(b). It tests eight bytes at a time: in each 64-bit little-endian word, the
// high bit of a byte is set in (w-0x21..)&^w when the byte is below 0x21 and in (w+0x01..)|w when
// it is above 0x7e. A borrow or carry can only set bits above a byte that is itself out of range,
// so the lowest marked byte is the first one.
func nonVisible(b []byte, i int) int {
	const (
		lo   = 0x2121212121212121
		one  = 0x0101010101010101
		high = 0x8080808080808080
	)
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		if m := ((w-lo)&^w | (w + one) | w) & high; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(b); i++ {
		if b[i] < 0x21 || b[i] > 0x7e {
			return i
		}
	}
	return len(b)
}

// findHost returns the value of the first complete Host header line among the header lines in b, or
// nil. It stops at the end of the header section.
func findHost(b []byte) []byte {
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			return nil // incomplete line: not peeked yet
		}
		line := b[:nl]
		b = b[nl+1:]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) == 0 {
			return nil // end of headers
		}
		if len(line) >= 5 && line[4] == ':' &&
			line[0]|0x20 == 'h' && line[1]|0x20 == 'o' && line[2]|0x20 == 's' && line[3]|0x20 == 't' {
			v := line[5:]
			for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
				v = v[1:]
			}
			for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
				v = v[:len(v)-1]
			}
			return v
		}
	}
	return nil
}
