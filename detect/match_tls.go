package detect

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

// TLSMatcher returns the Matcher for TLS: it parses the ClientHello by hand,
// allocating nothing, across any number of handshake records and TCP
// segments, and fills Result.TLS with the SNI host name, the ALPN list and
// the offered versions. It decides NoMatch as soon as the first bytes cannot
// start a handshake record carrying a ClientHello, and NoMatch for any
// malformed hello; it matches only a complete, well-formed ClientHello (so
// a hello bigger than the Detector's MaxPeek ends with ReasonLimit).
// SSLv2-compatible hellos are not matched.
func TLSMatcher() Matcher { return tlsMatcher{} }

func (tlsMatcher) Protocol() Protocol { return TLS }

func (tlsMatcher) Match(b []byte, r *Result) Verdict {
	return ParseClientHello(b, &r.TLS) // writes r.TLS only on Match
}

// ParseClientHello parses a TLS ClientHello from the start of a TLS stream
// (record headers included) into info without allocating. It returns Match
// for a complete, well-formed hello, NeedMore when b is a valid but
// incomplete prefix and NoMatch otherwise. info is written only on Match.
func ParseClientHello(b []byte, info *TLSInfo) Verdict {
	// Early checks on the first record header, byte by byte, so that a
	// first byte that cannot start TLS decides at once.
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
	c := hsCursor{b: b}
	var out TLSInfo
	v := c.clientHello(&out)
	if v == Match {
		*info = out
	}
	return v
}

// hsCursor reads the handshake byte stream carried by consecutive TLS
// handshake records in b, skipping the record headers.
type hsCursor struct {
	b      []byte
	p      int  // next byte in b
	recEnd int  // end in b of the current record's payload
	lim    int  // min(recEnd, len(b)): bytes readable without crossing
	hdrs   int  // record header bytes skipped (handshake offset = p - hdrs)
	more   bool // b ended: need more bytes
	bad    bool // malformed
}

// ready makes b[p] the next handshake byte, crossing record headers; it
// reports false (setting more or bad) when it cannot.
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

func (c *hsCursor) verdict() Verdict {
	if c.more {
		return NeedMore
	}
	return NoMatch
}

// clientHello parses one ClientHello handshake message (RFC 8446 4.1.2).
func (c *hsCursor) clientHello(info *TLSInfo) Verdict {
	typ := c.u8()
	length := c.u24()
	if c.stopped() {
		return c.verdict()
	}
	if typ != tlsHandshakeHello || length < 2+32+1+2+1 {
		return NoMatch
	}
	end := c.at() + length

	info.LegacyVersion = uint16(c.u16())
	c.read(nil, 32) // random
	sid := c.u8()
	if c.stopped() {
		return c.verdict()
	}
	if sid > 32 || info.LegacyVersion>>8 != 3 {
		return NoMatch
	}
	c.read(nil, sid)
	cs := c.u16()
	if c.stopped() {
		return c.verdict()
	}
	if cs < 2 || cs%2 != 0 || c.at()+cs > end {
		return NoMatch
	}
	c.read(nil, cs)
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
	list := c.u16()
	if c.stopped() {
		return c.verdict()
	}
	if c.at()+list != extEnd || list < 3 {
		return NoMatch
	}
	for c.at() < extEnd {
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

// alpn parses the application_layer_protocol_negotiation extension
// (RFC 7301 section 3.1), keeping the wire-format list inline.
func (c *hsCursor) alpn(info *TLSInfo, extEnd int) Verdict {
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

// versions parses the supported_versions extension of a ClientHello
// (RFC 8446 section 4.2.1), leaving out GREASE values (RFC 8701).
func (c *hsCursor) versions(info *TLSInfo, extEnd int) Verdict {
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
		if v&0x0f0f == 0x0a0a && v>>8 == v&0xff {
			continue // GREASE
		}
		if int(info.nVersions) < maxVersions {
			info.versions[info.nVersions] = v
			info.nVersions++
		}
	}
	return Match
}
