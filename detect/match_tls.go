package detect

import "encoding/binary"

// TLS record and handshake constants.
const (
	tlsRecordHandshake = 0x16
	tlsHandshakeHello  = 0x01
	tlsMaxRecord       = 1 << 14
	tlsRecordHeaderLen = 5

	extServerName        = 0
	extALPN              = 16
	extSupportedVersions = 43
)

type tlsMatcher struct{}

// TLSMatcher returns the Matcher for TLS: it parses the ClientHello by hand, allocating nothing,
// across any number of handshake records and TCP segments, and fills Result.TLS with the SNI host
// name, the ALPN list and the offered versions. It decides NoMatch as soon as the first bytes
// cannot start a handshake record carrying a ClientHello, and NoMatch for any malformed hello; it
// matches only a complete, well-formed ClientHello (so a hello bigger than the Detector's MaxPeek
// ends with ReasonLimit). SSLv2-compatible hellos are not matched. [TLSRecordMatcher] classifies by
// the first bytes alone, for callers that need no SNI or ALPN.
func TLSMatcher() Matcher { return tlsMatcher{} }

func (tlsMatcher) Protocol() Protocol { return TLS }

func (tlsMatcher) Match(b []byte, r *Result) Verdict {
	if len(b) > 0 && b[0] != tlsRecordHandshake {
		return NoMatch // not TLS: decided without a call
	}
	return ParseClientHello(b, &r.TLS) // writes r.TLS only on Match
}

type tlsRecordMatcher struct{}

// TLSRecordMatcher returns an opt-in Matcher for TLS that classifies without parsing the
// ClientHello: it matches as soon as the first record header (content type handshake, version 3.x,
// a length of 1 to 16,384), the handshake header (type client_hello, a length no shorter than the
// smallest hello) and the hello's legacy_version (3.x) are there: 11 bytes in one record, more when
// a client splits its hello into tiny records. It fills nothing in Result.TLS.
//
// Use it in place of [TLSMatcher] when the TLS connection is terminated behind the detector (a
// Mux's TLS listener served by crypto/tls, say) and nothing routes on SNI or ALPN at detection
// time: it decides on the first segment even when a large post-quantum hello spans several, it
// costs a few nanoseconds instead of a parse, and a hello that TLSMatcher would refuse (malformed,
// or bigger than the Detector's MaxPeek) still goes to the TLS server, whose own parser then
// answers the client with an alert. Like TLSMatcher it refuses SSLv2-compatible hellos.
func TLSRecordMatcher() Matcher { return tlsRecordMatcher{} }

func (tlsRecordMatcher) Protocol() Protocol { return TLS }

func (tlsRecordMatcher) Match(b []byte, _ *Result) Verdict {
	if len(b) >= tlsRecordHeaderLen+6 {
		if rec := int(b[3])<<8 | int(b[4]); rec >= 6 {
			// The first record holds the handshake header and legacy_version: the checks of
			// recordStart and those below, straight through.
			if b[0] != tlsRecordHandshake || b[1] != 3 || b[2] > 4 || rec > tlsMaxRecord ||
				b[5] != tlsHandshakeHello || int(b[6])<<16|int(b[7])<<8|int(b[8]) < minHelloBody || b[9] != 3 {
				return NoMatch
			}
			return Match
		}
	}
	// Fewer than 11 bytes, or a hello split into records of under 6 bytes.
	if v := recordStart(b); v != Match {
		return v
	}
	c := hsCursor{b: b, end: maxInt}
	c.u8() // the handshake type, checked by recordStart
	length := c.u24()
	version := c.u16()
	if c.stopped() {
		return c.verdict()
	}
	if length < minHelloBody || version>>8 != 3 {
		return NoMatch
	}
	return Match
}

// ParseClientHello parses a TLS ClientHello from the start of a TLS stream (record headers
// included) into info without allocating. It returns Match for a complete, well-formed hello,
// NeedMore when b is a valid but incomplete prefix and NoMatch otherwise. info is written only on
// Match.
func ParseClientHello(b []byte, info *TLSInfo) Verdict {
	if v := recordStart(b); v != Match {
		return v
	}
	// Fast path: the first record holds the handshake header and the whole ClientHello (only a
	// hello split on purpose, or one over 16 KiB, spans records), so the hello is parsed in place,
	// in one piece.
	if len(b) >= tlsRecordHeaderLen+4 {
		rec := int(b[3])<<8 | int(b[4])
		full := int(b[6])<<16 | int(b[7])<<8 | int(b[8])
		if 4+full <= rec {
			if full < minHelloBody {
				return NoMatch
			}
			body := b[tlsRecordHeaderLen+4:]
			return parseHelloBody(body[:min(len(body), full)], full, info)
		}
	}
	return parseHelloRecords(b, info)
}

// recordStart checks the first record header and the handshake type, byte by byte, so that a first
// byte that cannot start TLS decides at once. It returns Match when the first six bytes are there
// and fit.
func recordStart(b []byte) Verdict {
	if len(b) > 0 && b[0] != tlsRecordHandshake {
		return NoMatch
	}
	if len(b) > 1 && b[1] != 3 {
		return NoMatch
	}
	if len(b) > 2 && b[2] > 4 {
		return NoMatch
	}
	if len(b) > 4 {
		if n := int(b[3])<<8 | int(b[4]); n == 0 || n > tlsMaxRecord {
			return NoMatch
		}
	}
	if len(b) > 5 && b[5] != tlsHandshakeHello {
		return NoMatch
	}
	if len(b) < 6 {
		return NeedMore
	}
	return Match
}

// minHelloBody is the shortest ClientHello body: legacy_version, random, an empty session id, one
// cipher suite and one compression method.
const minHelloBody = 2 + 32 + 1 + 2 + 1

// parseHelloRecords parses the ClientHello through an hsCursor, which crosses record headers: the
// general path, for hellos split across records. It decides exactly as parseHelloBody does on the
// same handshake bytes (FuzzTLSClientHello checks it).
func parseHelloRecords(b []byte, info *TLSInfo) Verdict {
	c := hsCursor{b: b, end: maxInt}
	var out TLSInfo
	v := c.clientHello(&out)
	if v == Match {
		*info = out
	}
	return v
}

const maxInt = int(^uint(0) >> 1)

// short is the verdict when a field of the ClientHello body needs the first need bytes of it and
// fewer are here: NoMatch when the field would run past the end of the message (full bytes), else
// NeedMore.
func short(need, full int) Verdict {
	if need > full {
		return NoMatch
	}
	return NeedMore
}

// parseHelloBody parses a ClientHello body (after the 4-byte handshake header) that lies in one
// piece: h holds its first bytes, all of them when len(h) == full (the length the header gives, >=
// minHelloBody).
//
// It reads the body field by field at offset p, keeping p <= len(h) between fields: a field that
// would run past full is NoMatch (more bytes cannot mend it), one that runs past len(h) is
// NeedMore. It first validates the whole hello and notes where the kept extensions are, then fills
// info, so info is written only on Match. parseHelloRecords makes the same decisions in the same
// order (see hsCursor.need).
func parseHelloBody(h []byte, full int, info *TLSInfo) Verdict {
	// legacy_version, random and the session id's length: within full.
	if len(h) < 35 {
		return NeedMore
	}
	if h[34] > 32 || h[0] != 3 {
		return NoMatch
	}
	p := 35 + int(h[34]) // skip the session id
	if p > full {
		return NoMatch
	}
	if p > len(h) {
		return NeedMore
	}
	if p+2 > len(h) {
		return short(p+2, full)
	}
	cs := int(h[p])<<8 | int(h[p+1])
	p += 2
	if cs < 2 || cs%2 != 0 || p+cs > full {
		return NoMatch
	}
	p += cs // skip the cipher suites
	if p > len(h) {
		return NeedMore
	}
	if p+1 > len(h) {
		return short(p+1, full)
	}
	cm := int(h[p])
	p++
	if cm < 1 || p+cm > full {
		return NoMatch
	}
	p += cm // skip the compression methods
	if p > len(h) {
		return NeedMore
	}

	// Extensions (TLS 1.2 and older may omit them). Offsets of the kept ones' contents: the SNI
	// host name, the ALPN protocol list and the supported_versions list.
	sawSNI, sawALPN, sawVersions := false, false, false
	var sniAt, sniLen, alpnAt, alpnEnd, verAt, verEnd int
	if p < full {
		if p+2 > len(h) {
			return short(p+2, full)
		}
		extLen := int(h[p])<<8 | int(h[p+1])
		p += 2
		if p+extLen != full {
			return NoMatch
		}
	}
	for p < full {
		if p+4 > full {
			return NoMatch
		}
		if p+4 > len(h) {
			return NeedMore
		}
		hdr := binary.BigEndian.Uint32(h[p:]) // type, length
		typ, end := hdr>>16, p+4+int(hdr&0xffff)
		p += 4
		if end > full {
			return NoMatch
		}
		switch typ {
		case extServerName: // RFC 6066 section 3
			if sawSNI {
				return NoMatch
			}
			sawSNI = true
			if p+2 > len(h) {
				return short(p+2, full)
			}
			if list := int(h[p])<<8 | int(h[p+1]); p+2+list != end || list < 3 {
				return NoMatch
			}
			for p += 2; p < end; {
				if p+3 > len(h) {
					return short(p+3, full)
				}
				nameType, n := h[p], int(h[p+1])<<8|int(h[p+2])
				p += 3
				if p+n > end || n == 0 {
					return NoMatch
				}
				if nameType == 0 && sniLen == 0 && n <= maxSNI {
					sniAt, sniLen = p, n
				}
				if p += n; p > len(h) {
					return NeedMore
				}
			}
		case extALPN: // RFC 7301 section 3.1
			if sawALPN {
				return NoMatch
			}
			sawALPN = true
			if p+2 > len(h) {
				return short(p+2, full)
			}
			if list := int(h[p])<<8 | int(h[p+1]); p+2+list != end || list < 2 {
				return NoMatch
			}
			p += 2
			alpnAt, alpnEnd = p, end
			for p < end {
				if p+1 > len(h) {
					return NeedMore // p < end <= full
				}
				n := int(h[p])
				p++
				if n == 0 || p+n > end {
					return NoMatch
				}
				if p += n; p > len(h) {
					return NeedMore
				}
			}
		case extSupportedVersions: // RFC 8446 section 4.2.1
			if sawVersions {
				return NoMatch
			}
			sawVersions = true
			if p+1 > len(h) {
				return short(p+1, full)
			}
			if n := int(h[p]); p+1+n != end || n < 2 || n%2 != 0 {
				return NoMatch
			}
			verAt, verEnd = p+1, end
		}
		if p = end; p > len(h) { // skip the rest of the extension
			return NeedMore
		}
	}

	// A well-formed hello: fill info. Every writer of a TLSInfo leaves its arrays zero beyond their
	// lengths (the zero value is, and the record path assigns a fresh one), so clearing from the
	// new length up to the old one leaves no byte of an earlier hello behind: info ends up equal to
	// a TLSInfo filled from zero.
	info.LegacyVersion = uint16(h[0])<<8 | uint16(h[1])
	n := copy(info.sni[:], h[sniAt:sniAt+sniLen])
	if old := int(info.sniLen); old > n {
		clear(info.sni[n:old])
	}
	info.sniLen = uint8(n)
	n = 0
	if alpnEnd-alpnAt <= maxALPN { // the whole list fits: one copy
		n = copy(info.alpn[:], h[alpnAt:alpnEnd])
	} else { // keep the names that fit, in order
		for q := alpnAt; q < alpnEnd; {
			k := 1 + int(h[q])
			if n+k <= maxALPN {
				n += copy(info.alpn[n:], h[q:q+k])
			}
			q += k
		}
	}
	if old := int(info.alpnLen); old > n {
		clear(info.alpn[n:old])
	}
	info.alpnLen = uint16(n)
	n = 0
	for q := verAt; q < verEnd && n < maxVersions; q += 2 {
		if v := uint16(h[q])<<8 | uint16(h[q+1]); !isGREASE(v) {
			info.versions[n] = v
			n++
		}
	}
	if old := int(info.nVersions); old > n {
		clear(info.versions[n:old])
	}
	info.nVersions = uint8(n)
	return Match
}

// isGREASE reports whether v is a GREASE value (RFC 8701): 0x?a?a with both bytes equal.
func isGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// hsCursor reads the handshake byte stream carried by consecutive TLS handshake records in b,
// skipping the record headers.
type hsCursor struct {
	b      []byte
	p      int  // next byte in b
	recEnd int  // end in b of the current record's payload
	lim    int  // min(recEnd, len(b)): bytes readable without crossing
	hdrs   int  // record header bytes skipped (handshake offset = p - hdrs)
	end    int  // handshake offset of the end of the ClientHello (maxInt until known)
	more   bool // b ended: need more bytes
	bad    bool // malformed
}

// ready makes b[p] the next handshake byte, crossing record headers; it reports false (setting more
// or bad) when it cannot.
func (c *hsCursor) ready() bool {
	if c.more || c.bad {
		return false
	}
	for c.p >= c.recEnd {
		h := c.recEnd
		if h+tlsRecordHeaderLen > len(c.b) {
			if h < len(c.b) && c.b[h] != tlsRecordHandshake {
				c.bad = true
			} else {
				c.more = true
			}
			return false
		}
		n := int(c.b[h+3])<<8 | int(c.b[h+4])
		if c.b[h] != tlsRecordHandshake || c.b[h+1] != 3 || c.b[h+2] > 4 || n == 0 || n > tlsMaxRecord {
			c.bad = true
			return false
		}
		c.p = h + tlsRecordHeaderLen
		c.hdrs += tlsRecordHeaderLen
		c.recEnd = c.p + n
		c.lim = min(c.recEnd, len(c.b))
	}
	if c.p >= len(c.b) {
		c.more = true
		return false
	}
	return true
}

func (c *hsCursor) u8() int {
	if c.p < c.lim { // fast path, inlined
		c.p++
		return int(c.b[c.p-1])
	}
	return c.u8Slow()
}

//go:noinline
func (c *hsCursor) u8Slow() int {
	if !c.ready() {
		return 0
	}
	c.p++
	return int(c.b[c.p-1])
}

func (c *hsCursor) u16() int {
	if c.p+1 < c.lim { // fast path, inlined
		c.p += 2
		return int(c.b[c.p-2])<<8 | int(c.b[c.p-1])
	}
	return c.u16Slow()
}

//go:noinline
func (c *hsCursor) u16Slow() int { return c.u8Slow()<<8 | c.u8Slow() }

func (c *hsCursor) u24() int { return c.u8()<<16 | c.u8()<<8 | c.u8() }

// read copies the next len(dst) handshake bytes into dst (nil: skips them).
func (c *hsCursor) read(dst []byte, n int) {
	for n > 0 {
		if !c.ready() {
			return
		}
		k := c.lim - c.p
		if k > n {
			k = n
		}
		if dst != nil {
			dst = dst[copy(dst, c.b[c.p:c.p+k]):]
		}
		c.p += k
		n -= k
	}
}

// at is the offset in the handshake stream of the next byte.
func (c *hsCursor) at() int { return c.p - c.hdrs }

func (c *hsCursor) stopped() bool { return c.more || c.bad }

// need marks the cursor bad when the next k handshake bytes would run past the end of the
// ClientHello: more bytes cannot mend that. It is called before every field that may do so, in
// parseHelloBody's order, so that both parsers answer alike on every input.
func (c *hsCursor) need(k int) {
	if !c.stopped() && c.at()+k > c.end {
		c.bad = true
	}
}

func (c *hsCursor) verdict() Verdict {
	if c.more {
		return NeedMore
	}
	return NoMatch
}

// clientHello parses one ClientHello handshake message (RFC 8446 4.1.2). It makes the decisions of
// parseHelloBody, in the same order.
func (c *hsCursor) clientHello(info *TLSInfo) Verdict {
	typ := c.u8()
	length := c.u24()
	if c.stopped() {
		return c.verdict()
	}
	if typ != tlsHandshakeHello || length < minHelloBody {
		return NoMatch
	}
	end := c.at() + length
	c.end = end

	info.LegacyVersion = uint16(c.u16())
	c.read(nil, 32) // random
	sid := c.u8()
	if c.stopped() {
		return c.verdict()
	}
	if sid > 32 || info.LegacyVersion>>8 != 3 {
		return NoMatch
	}
	c.need(sid)
	c.read(nil, sid)
	c.need(2)
	cs := c.u16()
	if c.stopped() {
		return c.verdict()
	}
	if cs < 2 || cs%2 != 0 || c.at()+cs > end {
		return NoMatch
	}
	c.read(nil, cs)
	c.need(1)
	cm := c.u8()
	if c.stopped() {
		return c.verdict()
	}
	if cm < 1 || c.at()+cm > end {
		return NoMatch
	}
	c.read(nil, cm)
	if c.stopped() {
		return c.verdict()
	}
	if c.at() == end {
		return Match // no extensions (TLS 1.2 and older may omit them)
	}
	c.need(2)
	extLen := c.u16()
	if c.stopped() {
		return c.verdict()
	}
	if c.at()+extLen != end {
		return NoMatch
	}
	sawSNI, sawALPN, sawVersions := false, false, false
	for c.at() < end {
		if c.at()+4 > end {
			return NoMatch
		}
		typ := c.u16()
		n := c.u16()
		if c.stopped() {
			return c.verdict()
		}
		extEnd := c.at() + n
		if extEnd > end {
			return NoMatch
		}
		switch typ {
		case extServerName:
			if sawSNI {
				return NoMatch
			}
			sawSNI = true
			if v := c.serverName(info, extEnd); v != Match {
				return v
			}
		case extALPN:
			if sawALPN {
				return NoMatch
			}
			sawALPN = true
			if v := c.alpn(info, extEnd); v != Match {
				return v
			}
		case extSupportedVersions:
			if sawVersions {
				return NoMatch
			}
			sawVersions = true
			if v := c.versions(info, extEnd); v != Match {
				return v
			}
		default:
			c.read(nil, n)
		}
		if c.stopped() {
			return c.verdict()
		}
		if c.at() != extEnd {
			return NoMatch
		}
	}
	return Match
}

// serverName parses the server_name extension (RFC 6066 section 3).
func (c *hsCursor) serverName(info *TLSInfo, extEnd int) Verdict {
	c.need(2)
	list := c.u16()
	if c.stopped() {
		return c.verdict()
	}
	if c.at()+list != extEnd || list < 3 {
		return NoMatch
	}
	for c.at() < extEnd {
		c.need(3)
		typ := c.u8()
		n := c.u16()
		if c.stopped() {
			return c.verdict()
		}
		if c.at()+n > extEnd || n == 0 {
			return NoMatch
		}
		if typ == 0 && info.sniLen == 0 && n <= maxSNI {
			c.read(info.sni[:n], n)
			info.sniLen = uint8(n)
		} else {
			c.read(nil, n)
		}
		if c.stopped() {
			return c.verdict()
		}
	}
	return Match
}

// alpn parses the application_layer_protocol_negotiation extension (RFC 7301 section 3.1), keeping
// the wire-format list inline.
func (c *hsCursor) alpn(info *TLSInfo, extEnd int) Verdict {
	c.need(2)
	list := c.u16()
	if c.stopped() {
		return c.verdict()
	}
	if c.at()+list != extEnd || list < 2 {
		return NoMatch
	}
	for c.at() < extEnd {
		n := c.u8()
		if c.stopped() {
			return c.verdict()
		}
		if n == 0 || c.at()+n > extEnd {
			return NoMatch
		}
		if at := int(info.alpnLen); at+1+n <= maxALPN {
			info.alpn[at] = byte(n)
			c.read(info.alpn[at+1:at+1+n], n)
			info.alpnLen += uint16(1 + n)
		} else {
			c.read(nil, n)
		}
		if c.stopped() {
			return c.verdict()
		}
	}
	return Match
}

// versions parses the supported_versions extension of a ClientHello (RFC 8446 section 4.2.1),
// leaving out GREASE values (RFC 8701).
func (c *hsCursor) versions(info *TLSInfo, extEnd int) Verdict {
	c.need(1)
	n := c.u8()
	if c.stopped() {
		return c.verdict()
	}
	if c.at()+n != extEnd || n < 2 || n%2 != 0 {
		return NoMatch
	}
	for c.at() < extEnd {
		v := uint16(c.u16())
		if c.stopped() {
			return c.verdict()
		}
		if isGREASE(v) {
			continue
		}
		if int(info.nVersions) < maxVersions {
			info.versions[info.nVersions] = v
			info.nVersions++
		}
	}
	return Match
}
