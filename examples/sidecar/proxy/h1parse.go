package proxy

import (
	"bytes"

	"golang.org/x/net/http/httpguts"
)

// The HTTP/1.1 heads the direct path (h1.go) carries itself: a request head
// it can forward with a few header lines dropped or added, and a response
// head it can forward the same way. Anything the parser does not accept is
// not an error for the client: the request goes to net/http, which answers
// it as before (400, 431, 417, 501...) or serves it (upgrades, CONNECT,
// chunked bodies, HTTP/1.0). So the parser only has to be strict, never
// complete.

// maxH1Headers bounds the header lines of a head the direct path carries.
const maxH1Headers = 64

// span is a part of a head buffer, [s, e).
type span struct{ s, e int32 }

func (sp span) of(b []byte) []byte { return b[sp.s:sp.e] }

// h1Line is one header line: its name, its value (trimmed), and the whole
// line with its CRLF, as it is copied.
type h1Line struct {
	name, value, line span
	drop              bool
}

// reqHead is a parsed request head.
type reqHead struct {
	method, target span
	host           span
	lines          [maxH1Headers]h1Line
	n              int   // lines used
	contentLength  int64 // -1: none
	close          bool  // the client asked to close after this request
}

// respHead is a parsed response head.
type respHead struct {
	status        int
	reason        span // the status line after the code, without CRLF
	http10        bool
	lines         [maxH1Headers]h1Line
	n             int
	contentLength int64 // -1: none
	chunked       bool
	close         bool // the upstream closes after this response
	grpcStatus    span // "Grpc-Status", when present (e.e == 0: absent)
}

// headEnd returns the length of the head at the start of b (through the
// blank line that ends it), 0 if b does not hold a whole head yet, or -1 if
// a line of it ends in a bare LF (the direct path carries only CRLF heads).
func headEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0
		}
		j += i
		if j == 0 || b[j-1] != '\r' {
			return -1
		}
		if j == i+1 { // the line was just CRLF
			return j + 1
		}
		i = j + 1
	}
}

// tchar reports whether c may appear in a token (RFC 9110, section 5.6.2).
func tchar(c byte) bool { return httpguts.IsTokenRune(rune(c)) }

// parseLines parses the header lines of b (a whole head, its first line
// excluded: b[start:]) into lines, checking names and values. It reports
// false for anything the direct path does not carry.
func parseLines(b []byte, start int, lines *[maxH1Headers]h1Line) (int, bool) {
	n := 0
	for i := start; ; {
		j := i + bytes.IndexByte(b[i:], '\n') // headEnd found every LF
		if j == i+1 {                         // CRLF: the end
			return n, true
		}
		if n == len(lines) {
			return 0, false
		}
		end := j - 1 // the CR
		colon := bytes.IndexByte(b[i:end], ':')
		if colon <= 0 {
			return 0, false // no name, or an obs-fold line (it starts with SP or HTAB)
		}
		colon += i
		for _, c := range b[i:colon] {
			if !tchar(c) {
				return 0, false
			}
		}
		vs, ve := colon+1, end
		for vs < ve && (b[vs] == ' ' || b[vs] == '\t') {
			vs++
		}
		for ve > vs && (b[ve-1] == ' ' || b[ve-1] == '\t') {
			ve--
		}
		for _, c := range b[vs:ve] {
			if c < ' ' && c != '\t' || c == 0x7f {
				return 0, false
			}
		}
		lines[n] = h1Line{name: span{int32(i), int32(colon)}, value: span{int32(vs), int32(ve)}, line: span{int32(i), int32(j + 1)}}
		n++
		i = j + 1
	}
}

// is reports whether the name of l is name (lower case), ignoring case.
func (l *h1Line) is(b []byte, name string) bool {
	n := l.name.of(b)
	if len(n) != len(name) {
		return false
	}
	for i := range n {
		c := n[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

// parseContentLength parses a Content-Length value: digits only, at most
// 18 of them.
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// requestHopHeaders are dropped from every request (ReverseProxy's list,
// RFC 9110 section 7.6.1), lower case. Te, Transfer-Encoding and Upgrade
// never reach this point: a request with them goes to net/http.
var requestHopHeaders = [...]string{"connection", "proxy-connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "trailer"}

// parseRequest parses the request head b (headEnd(b) == len(b)) for the
// direct path. inbound drops l5d-client-id lines. It reports false when
// the request must go to net/http.
func parseRequest(b []byte, h *reqHead, inbound bool) bool {
	*h = reqHead{contentLength: -1}
	// Request line: method SP origin-form SP HTTP/1.1 CRLF.
	sp1 := bytes.IndexByte(b, ' ')
	if sp1 <= 0 {
		return false
	}
	for _, c := range b[:sp1] {
		if !tchar(c) {
			return false
		}
	}
	if m := string(b[:sp1]); m == "CONNECT" || m == "PRI" {
		return false
	}
	eol := bytes.IndexByte(b, '\n') - 1
	sp2 := bytes.LastIndexByte(b[:eol], ' ')
	if sp2 <= sp1+1 || string(b[sp2+1:eol]) != "HTTP/1.1" {
		return false
	}
	if b[sp1+1] != '/' {
		return false // absolute-form, asterisk-form: net/http's
	}
	target := b[sp1+1 : sp2]
	for i, c := range target {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
		if c == '%' && (i+2 >= len(target) || !ishex(target[i+1]) || !ishex(target[i+2])) {
			return false // net/http refuses an invalid escape
		}
	}
	h.method, h.target = span{0, int32(sp1)}, span{int32(sp1 + 1), int32(sp2)}
	n, ok := parseLines(b, eol+2, &h.lines)
	if !ok {
		return false
	}
	h.n = n
	hosts := 0
	var conn [4]span // Connection values
	nconn := 0
	for i := range h.lines[:n] {
		l := &h.lines[i]
		v := l.value.of(b)
		switch {
		case l.is(b, "host"):
			hosts++
			h.host = l.value
			if !httpguts.ValidHostHeader(string(v)) {
				return false
			}
		case l.is(b, "content-length"):
			if h.contentLength >= 0 {
				return false
			}
			if h.contentLength, ok = parseContentLength(v); !ok {
				return false
			}
		case l.is(b, "transfer-encoding"), l.is(b, "upgrade"), l.is(b, "expect"), l.is(b, "te"):
			return false
		case l.is(b, "connection"):
			if nconn == len(conn) {
				return false
			}
			conn[nconn] = l.value
			nconn++
			l.drop = true
		case inbound && l.is(b, "l5d-client-id"):
			l.drop = true
		}
		for _, hop := range requestHopHeaders {
			if l.is(b, hop) {
				l.drop = true
			}
		}
	}
	if hosts != 1 {
		return false
	}
	for _, cv := range conn[:nconn] {
		for tok := range tokens(cv.of(b)) {
			switch {
			case equalFold(tok, "close"):
				h.close = true
			case equalFold(tok, "upgrade"):
				return false
			}
			dropNamed(b, h.lines[:n], tok)
		}
	}
	return true
}

// parseResponse parses the response head b (headEnd(b) == len(b)) from an
// upstream. It reports false for a head the proxy cannot carry (net/http's
// Transport would refuse it too: the client gets 502).
func parseResponse(b []byte, h *respHead) bool {
	*h = respHead{contentLength: -1}
	// Status line: HTTP/1.x SP 3DIGIT SP reason CRLF.
	eol := bytes.IndexByte(b, '\n') - 1
	if eol < 12 || string(b[:7]) != "HTTP/1." || (b[7] != '0' && b[7] != '1') || b[8] != ' ' {
		return false
	}
	h.http10 = b[7] == '0'
	code := 0
	for _, c := range b[9:12] {
		if c < '0' || c > '9' {
			return false
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || (eol > 12 && b[12] != ' ') {
		return false
	}
	h.status = code
	h.reason = span{int32(min(13, eol)), int32(eol)}
	n, ok := parseLines(b, eol+2, &h.lines)
	if !ok {
		return false
	}
	h.n = n
	var conn [4]span
	nconn := 0
	keepAlive := false
	for i := range h.lines[:n] {
		l := &h.lines[i]
		v := l.value.of(b)
		switch {
		case l.is(b, "content-length"):
			cl, ok := parseContentLength(v)
			if !ok || (h.contentLength >= 0 && cl != h.contentLength) {
				return false
			}
			h.contentLength = cl
		case l.is(b, "transfer-encoding") && h.http10:
			l.drop = true // ignored on HTTP/1.0, as net/http does (RFC 9112, section 6.1)
		case l.is(b, "transfer-encoding"):
			if h.chunked || !equalFold(v, "chunked") {
				return false // net/http's Transport decodes chunked alone
			}
			h.chunked = true
		case l.is(b, "connection"):
			if nconn == len(conn) {
				return false
			}
			conn[nconn] = l.value
			nconn++
			l.drop = true
		case l.is(b, "proxy-connection"), l.is(b, "keep-alive"), l.is(b, "te"), l.is(b, "upgrade"),
			l.is(b, "proxy-authenticate"), l.is(b, "proxy-authorization"):
			l.drop = true
		case l.is(b, "grpc-status"):
			h.grpcStatus = l.value
		}
	}
	if h.chunked && h.contentLength >= 0 {
		// Transfer-Encoding wins (RFC 9112, section 6.3); the length goes.
		h.contentLength = -1
		for i := range h.lines[:n] {
			if h.lines[i].is(b, "content-length") {
				h.lines[i].drop = true
			}
		}
	}
	for _, cv := range conn[:nconn] {
		for tok := range tokens(cv.of(b)) {
			switch {
			case equalFold(tok, "close"):
				h.close = true
			case equalFold(tok, "keep-alive"):
				keepAlive = true
			}
			if !equalFold(tok, "transfer-encoding") && !equalFold(tok, "content-length") {
				dropNamed(b, h.lines[:n], tok)
			}
		}
	}
	if h.http10 && !keepAlive {
		h.close = true
	}
	return true
}

// bodiless reports whether a response to method with status has no body
// whatever its head says (RFC 9112, section 6.3).
func bodiless(head bool, status int) bool {
	return head || status < 200 || status == 204 || status == 304
}

// tokens yields the comma-separated elements of a header value, trimmed.
func tokens(v []byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(v) > 0 {
			var tok []byte
			if i := bytes.IndexByte(v, ','); i >= 0 {
				tok, v = v[:i], v[i+1:]
			} else {
				tok, v = v, nil
			}
			tok = bytes.TrimSpace(tok)
			if len(tok) > 0 && !yield(tok) {
				return
			}
		}
	}
}

// dropNamed marks the lines whose name is tok (a Connection option) to be
// dropped.
func dropNamed(b []byte, lines []h1Line, tok []byte) {
	for i := range lines {
		if bytes.EqualFold(lines[i].name.of(b), tok) {
			lines[i].drop = true
		}
	}
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// chunkSize parses a chunk-size line (hex digits, then optional
// extensions), without its CRLF.
func chunkSize(line []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto rest
		}
		if i == 15 {
			return 0, false // more than 60 bits
		}
		n = n<<4 | int64(d)
	}
rest:
	if i == 0 {
		return 0, false
	}
	for _, c := range line[i:] { // BWS ; chunk-ext
		if c < ' ' && c != '\t' || c == 0x7f {
			return 0, false
		}
	}
	if i < len(line) && line[i] != ';' && line[i] != ' ' && line[i] != '\t' {
		return 0, false
	}
	return n, true
}
