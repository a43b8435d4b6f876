package detect

import "bytes"

// DefaultMatchers returns the matchers a zero Detector uses, in order:
// HTTP/2 prior-knowledge preface, HTTP/1 request line, TLS ClientHello.
func DefaultMatchers() []Matcher {
	return []Matcher{HTTP2Matcher(), HTTP1Matcher(), TLSMatcher()}
}

// h2Preface is the HTTP/2 client connection preface (RFC 9113, section 3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// H2PrefaceLen is the length of the HTTP/2 client connection preface.
const H2PrefaceLen = len(h2Preface)

type http2Matcher struct{}

// HTTP2Matcher returns the Matcher for HTTP/2 with prior knowledge: it
// matches the full 24-byte client connection preface
// "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" and nothing shorter.
func HTTP2Matcher() Matcher { return http2Matcher{} }

func (http2Matcher) Protocol() Protocol { return HTTP2 }

func (http2Matcher) Match(b []byte, _ *Result) Verdict {
	if len(b) >= len(h2Preface) {
		if string(b[:len(h2Preface)]) == h2Preface {
			return Match
		}
		return NoMatch
	}
	if string(b) == h2Preface[:len(b)] {
		return NeedMore
	}
	return NoMatch
}

// httpMethods are the request methods HTTP1Matcher accepts: those of
// RFC 9110, PATCH (RFC 5789), the WebDAV family (RFC 4918, 3253, 3648, 3744,
// 4437, 4791, 5323, 5842) and QUERY. PRI is left out: it only starts the
// HTTP/2 preface.
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

// lookupMethod returns the interned method named by tok, or "". The
// switch compiles to a search on length and value; converting tok for it
// does not allocate.
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

// HTTP1Matcher returns the Matcher for HTTP/1.0 and HTTP/1.1 requests. It
// matches a complete, valid request line: a known method token (RFC 9110,
// PATCH, WebDAV), SP, a plausible request-target (origin, absolute,
// authority or asterisk form, visible ASCII), SP, "HTTP/1." DIGIT and CRLF
// (or a bare LF). It fills Result.HTTP with the method and, when the Host
// header is among the bytes already peeked, the host. A request line longer
// than the Detector's MaxPeek ends detection with ReasonLimit.
func HTTP1Matcher() Matcher { return http1Matcher{} }

func (http1Matcher) Protocol() Protocol { return HTTP1 }

func (http1Matcher) Match(b []byte, r *Result) Verdict {
	if len(b) == 0 {
		return NeedMore
	}
	// Method token.
	lim := len(b)
	if lim > maxMethodLen+1 {
		lim = maxMethodLen + 1
	}
	sp := bytes.IndexByte(b[:lim], ' ')
	if sp < 0 {
		if len(b) > maxMethodLen || !isMethodPrefix(b) {
			return NoMatch
		}
		return NeedMore
	}
	method := lookupMethod(b[:sp])
	if method == "" {
		return NoMatch
	}
	// Request target.
	i := sp + 1
	if i >= len(b) {
		return NeedMore
	}
	switch c := b[i]; {
	case c == '/', c == '*', c == '[',
		c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
	default:
		return NoMatch
	}
	for ; i < len(b) && b[i] != ' '; i++ {
		if b[i] < 0x21 || b[i] > 0x7e {
			return NoMatch
		}
	}
	if i == len(b) {
		return NeedMore
	}
	// HTTP-version and line end.
	i++
	const ver = "HTTP/1."
	rest := b[i:]
	if len(rest) < len(ver) {
		if string(rest) != ver[:len(rest)] {
			return NoMatch
		}
		return NeedMore
	}
	if string(rest[:len(ver)]) != ver {
		return NoMatch
	}
	rest = rest[len(ver):]
	if len(rest) == 0 {
		return NeedMore
	}
	if rest[0] < '0' || rest[0] > '9' {
		return NoMatch
	}
	rest = rest[1:]
	if len(rest) == 0 {
		return NeedMore
	}
	switch rest[0] {
	case '\n':
		rest = rest[1:]
	case '\r':
		if len(rest) == 1 {
			return NeedMore
		}
		if rest[1] != '\n' {
			return NoMatch
		}
		rest = rest[2:]
	default:
		return NoMatch
	}
	r.HTTP.Method = method
	r.HTTP.hostLen = 0
	if h := findHost(rest); len(h) <= maxHost {
		r.HTTP.hostLen = uint8(copy(r.HTTP.host[:], h))
	}
	return Match
}

// findHost returns the value of the first complete Host header line among
// the header lines in b, or nil. It stops at the end of the header section.
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
