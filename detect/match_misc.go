package detect

import "bytes"

// proxyV2Sig is the 12-byte PROXY protocol v2 signature.
const proxyV2Sig = "\r\n\r\n\x00\r\nQUIT\n"

// proxyV1MaxLen is the longest PROXY v1 header line, CRLF included.
const proxyV1MaxLen = 107

type proxyMatcher struct{}

// PROXYMatcher returns the opt-in Matcher for the PROXY protocol (HAProxy): a complete version 1
// text line ("PROXY TCP4 ...\r\n", "PROXY TCP6 ...", "PROXY UNKNOWN...", at most 107 bytes) or a
// version 2 binary header (the 12-byte signature, version 2, command LOCAL or PROXY, a known
// address family and transport). It matches before the header's payload and sets
// Result.PROXYVersion; parse the header itself with package proxyproto (Reader.ReadHeader strips it
// from a connection and hands back the very *net.TCPConn, ready for detection).
func PROXYMatcher() Matcher { return proxyMatcher{} }

func (proxyMatcher) Protocol() Protocol { return PROXY }

func (proxyMatcher) Match(b []byte, r *Result) Verdict {
	if len(b) == 0 {
		return NeedMore
	}
	v, version := matchProxyV1(b), uint8(1)
	if b[0] == '\r' {
		v, version = matchProxyV2(b), 2
	}
	if v == Match {
		r.PROXYVersion = version
	}
	return v
}

func matchProxyV2(b []byte) Verdict {
	n := min(len(b), len(proxyV2Sig))
	if string(b[:n]) != proxyV2Sig[:n] {
		return NoMatch
	}
	if len(b) > 12 {
		verCmd := b[12]
		if verCmd>>4 != 2 || verCmd&0xf > 1 {
			return NoMatch
		}
	}
	if len(b) > 13 {
		fam := b[13]
		if fam>>4 > 3 || fam&0xf > 2 {
			return NoMatch
		}
	}
	if len(b) < 16 {
		return NeedMore
	}
	length := int(b[14])<<8 | int(b[15])
	need := 0
	switch b[13] >> 4 {
	case 1: // AF_INET
		need = 12
	case 2: // AF_INET6
		need = 36
	case 3: // AF_UNIX
		need = 216
	}
	if b[12]&0xf == 1 && length < need {
		return NoMatch
	}
	return Match
}

func matchProxyV1(b []byte) Verdict {
	const prefix = "PROXY "
	n := min(len(b), len(prefix))
	if string(b[:n]) != prefix[:n] {
		return NoMatch
	}
	if len(b) <= len(prefix) {
		return NeedMore
	}
	lim := min(len(b), proxyV1MaxLen)
	end := bytes.Index(b[:lim], []byte("\r\n"))
	if end < 0 {
		if len(b) >= proxyV1MaxLen {
			return NoMatch
		}
		// Check what is there so that garbage fails early.
		for _, c := range b[len(prefix):lim] {
			if (c < 0x20 || c > 0x7e) && c != '\r' {
				return NoMatch
			}
		}
		return NeedMore
	}
	line := b[len(prefix):end]
	if bytes.HasPrefix(line, []byte("UNKNOWN")) {
		for _, c := range line {
			if c < 0x20 || c > 0x7e {
				return NoMatch
			}
		}
		return Match
	}
	if !bytes.HasPrefix(line, []byte("TCP4 ")) && !bytes.HasPrefix(line, []byte("TCP6 ")) {
		return NoMatch
	}
	// src dst sport dport
	fields := 0
	for f := range bytes.SplitSeq(line[5:], []byte(" ")) {
		fields++
		if len(f) == 0 {
			return NoMatch
		}
		for _, c := range f {
			ok := c >= '0' && c <= '9' || c == '.' || c == ':' ||
				c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
			if !ok {
				return NoMatch
			}
		}
	}
	if fields != 4 {
		return NoMatch
	}
	return Match
}

type sshMatcher struct{}

// SSHMatcher returns the opt-in Matcher for SSH: the client's identification string starting
// "SSH-2.0-" (or "SSH-1.99-", RFC 4253 section 5.1).
func SSHMatcher() Matcher { return sshMatcher{} }

func (sshMatcher) Protocol() Protocol { return SSH }

func (sshMatcher) Match(b []byte, _ *Result) Verdict {
	for _, p := range [...]string{"SSH-2.0-", "SSH-1.99-"} {
		n := min(len(b), len(p))
		if string(b[:n]) != p[:n] {
			continue
		}
		if n == len(p) {
			return Match
		}
		return NeedMore
	}
	return NoMatch
}

// PostgreSQL first-message codes.
const (
	pgSSLRequest    = 80877103
	pgGSSENCRequest = 80877104
	pgCancelRequest = 80877102
	pgMaxStartup    = 10000 // the server's own limit on a startup packet
)

type postgresMatcher struct{}

// PostgreSQLMatcher returns the opt-in Matcher for PostgreSQL's first client message: SSLRequest,
// GSSENCRequest, CancelRequest, or a complete protocol 3.x StartupMessage whose parameters are well
// formed and include "user".
func PostgreSQLMatcher() Matcher { return postgresMatcher{} }

func (postgresMatcher) Protocol() Protocol { return PostgreSQL }

func (postgresMatcher) Match(b []byte, _ *Result) Verdict {
	// Length: 8..10000, so the first two bytes are 0 and the third <= 0x27.
	if len(b) > 0 && b[0] != 0 || len(b) > 1 && b[1] != 0 || len(b) > 2 && b[2] > pgMaxStartup>>8 {
		return NoMatch
	}
	// Code: 0x0003xxxx (protocol 3.x) or 0x04d216xx (special requests).
	if len(b) > 4 && b[4] != 0 && b[4] != 0x04 {
		return NoMatch
	}
	if len(b) < 8 {
		return NeedMore
	}
	length := int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3])
	code := int(b[4])<<24 | int(b[5])<<16 | int(b[6])<<8 | int(b[7])
	switch code {
	case pgSSLRequest, pgGSSENCRequest:
		if length == 8 {
			return Match
		}
		return NoMatch
	case pgCancelRequest:
		if length >= 16 && length <= 8+4+256 {
			return Match
		}
		return NoMatch
	}
	if code>>16 != 3 || code&0xffff > 0xff || length < 8+5+1 || length > pgMaxStartup {
		return NoMatch
	}
	if len(b) < length {
		// Fail early on a byte that cannot be in the parameters.
		return NeedMore
	}
	params := b[8:length]
	if params[len(params)-1] != 0 {
		return NoMatch
	}
	params = params[:len(params)-1]
	user := false
	for key := true; len(params) > 0; key = !key {
		z := bytes.IndexByte(params, 0)
		if z < 0 || key && z == 0 {
			return NoMatch
		}
		if key && string(params[:z]) == "user" {
			user = true
		}
		params = params[z+1:]
		if key && len(params) == 0 {
			return NoMatch // a key without a value
		}
	}
	if !user {
		return NoMatch
	}
	return Match
}
