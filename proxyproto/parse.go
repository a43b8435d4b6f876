package proxyproto

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
	"strconv"
)

// Wire constants.
const (
	v2Sig       = "\r\n\r\n\x00\r\nQUIT\n" // the 12-byte signature of version 2
	v2FixedLen  = 16                       // signature, version and command, transport, length
	v1Prefix    = "PROXY"
	v1MaxLen    = 107 // the longest version 1 line, CRLF included
	maxUniqueID = 128
	unixPathLen = 108

	// MaxV2Len is the longest version 2 header: 16 bytes and a 65535-byte
	// block.
	MaxV2Len = v2FixedLen + 0xffff
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// verdict is what scan says about the bytes seen so far.
type verdict uint8

const (
	needMore  verdict = iota // a header may start here; show me more bytes
	complete                 // a whole header is there (its length is known)
	notHeader                // these bytes do not start a header
)

// scan looks at the first bytes of a connection. For a header whose length
// is known it returns that length (with needMore until all of it is in b).
// A header longer than max, or bytes that begin like a header and break its
// framing, are an error.
func scan(b []byte, max int) (int, verdict, error) {
	if len(b) == 0 {
		return 0, needMore, nil
	}
	switch b[0] {
	case v2Sig[0]:
		n := min(len(b), len(v2Sig))
		if string(b[:n]) != v2Sig[:n] {
			return 0, notHeader, nil
		}
		if len(b) > 12 {
			if b[12]>>4 != 2 {
				return 0, needMore, invalid("v2 signature with version " + strconv.Itoa(int(b[12]>>4)))
			}
			if b[12]&0xf > 1 {
				return 0, needMore, invalid("v2 command 0x" + strconv.FormatUint(uint64(b[12]&0xf), 16))
			}
		}
		if len(b) < v2FixedLen {
			return 0, needMore, nil
		}
		hl := v2FixedLen + int(binary.BigEndian.Uint16(b[14:16]))
		if hl > max {
			return 0, needMore, invalid("v2 header of " + strconv.Itoa(hl) + " bytes, over the limit of " + strconv.Itoa(max))
		}
		if len(b) < hl {
			return hl, needMore, nil
		}
		return hl, complete, nil
	case v1Prefix[0]:
		n := min(len(b), len(v1Prefix))
		if string(b[:n]) != v1Prefix[:n] {
			return 0, notHeader, nil
		}
		lim := min(len(b), v1MaxLen)
		for i := n; i < lim; i++ {
			switch b[i] {
			case '\n':
				return 0, needMore, invalid("v1 line ends with a bare LF")
			case '\r':
				if i+2 > v1MaxLen {
					return 0, needMore, invalid("v1 line without CRLF in its first 107 bytes")
				}
				if i+1 == len(b) {
					return 0, needMore, nil
				}
				if b[i+1] != '\n' {
					return 0, needMore, invalid("v1 line has a CR without LF")
				}
				return i + 2, complete, nil
			}
		}
		if len(b) >= v1MaxLen {
			return 0, needMore, invalid("v1 line without CRLF in its first 107 bytes")
		}
		return 0, needMore, nil
	}
	return 0, notHeader, nil
}

// surelyHeader reports whether b, which scan said may start a header, is
// certainly one: the whole v2 signature, or "PROXY". Shorter prefixes
// ("PRO") may be the start of something else.
func surelyHeader(b []byte) bool {
	return len(b) >= len(v2Sig) && b[0] == v2Sig[0] || len(b) >= len(v1Prefix) && b[0] == v1Prefix[0]
}

// Parse parses the PROXY protocol header (version 1 or 2) at the start of
// b and returns it with its length in bytes; what follows it in b is the
// connection's data. The Header owns its memory (it does not alias b).
//
// b must hold the whole header: when it holds a prefix of one, the error
// is ErrTruncated; when it does not begin like a header, ErrNoHeader; when
// it begins like one and breaks the rules (including a CRC32C that does
// not match), ErrInvalid or ErrChecksum. A version 2 header may be as long
// as MaxV2Len.
func Parse(b []byte) (*Header, int, error) {
	hl, v, err := scan(b, MaxV2Len)
	switch {
	case err != nil:
		return nil, 0, err
	case v == notHeader:
		return nil, 0, &Error{Kind: ErrNoHeader}
	case v == needMore:
		return nil, 0, &Error{Kind: ErrTruncated}
	}
	h, err := parseHeader(b[:hl])
	if err != nil {
		return nil, 0, err
	}
	return h, hl, nil
}

// parseHeader parses a whole header as scan delimited it.
func parseHeader(b []byte) (*Header, error) {
	if b[0] == v2Sig[0] {
		return parseV2(b)
	}
	return parseV1(b)
}

// parseV1 parses a version 1 line, CRLF included.
func parseV1(b []byte) (*Header, error) {
	line := b[:len(b)-2]
	if len(line) < 6 || line[5] != ' ' {
		return nil, invalid("v1 line without a space after PROXY")
	}
	rest := line[6:]
	proto, rest, _ := cut(rest)
	h := &Header{Version: V1, Command: Proxy}
	switch string(proto) {
	case "UNKNOWN":
		// The receiver must ignore the rest of the line.
		return h, nil
	case "TCP4":
		h.Transport = TCP4
	case "TCP6":
		h.Transport = TCP6
	default:
		return nil, invalid("v1 protocol " + strconv.Quote(string(proto)))
	}
	var f [4][]byte
	for i := range f {
		var ok bool
		f[i], rest, ok = cut(rest)
		if len(f[i]) == 0 || ok != (i < 3) {
			return nil, invalid("v1 line needs exactly 4 fields after " + h.Transport.String() + ", each after one space")
		}
	}
	src, err1 := parseV1Addr(f[0], h.Transport)
	dst, err2 := parseV1Addr(f[1], h.Transport)
	sport, err3 := parseV1Port(f[2])
	dport, err4 := parseV1Port(f[3])
	for _, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			return nil, err
		}
	}
	h.Source = netip.AddrPortFrom(src, sport)
	h.Destination = netip.AddrPortFrom(dst, dport)
	return h, nil
}

// cut splits b at its first space; found reports whether there was one.
func cut(b []byte) (before, after []byte, found bool) {
	for i, c := range b {
		if c == ' ' {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

func parseV1Addr(f []byte, t Transport) (netip.Addr, error) {
	a, err := netip.ParseAddr(string(f))
	if err != nil || a.Zone() != "" || (t == TCP4) != a.Is4() {
		return netip.Addr{}, invalid("v1 " + t.String() + " address " + strconv.Quote(string(f)))
	}
	return a, nil
}

func parseV1Port(f []byte) (uint16, error) {
	bad := len(f) > 5 || len(f) > 1 && f[0] == '0'
	n := 0
	for _, c := range f {
		if c < '0' || c > '9' {
			bad = true
			break
		}
		n = n*10 + int(c-'0')
	}
	if bad || n > 0xffff {
		return 0, invalid("v1 port " + strconv.Quote(string(f)))
	}
	return uint16(n), nil
}

// parseV2 parses a whole version 2 header.
func parseV2(b []byte) (*Header, error) {
	h := &Header{Version: V2, Command: Command(b[12] & 0xf)}
	if h.Command == Local {
		// The receiver must discard the block, family included.
		return h, nil
	}
	t := Transport(b[13])
	if !t.valid() {
		return nil, invalid("v2 address family and protocol 0x" + strconv.FormatUint(uint64(t), 16))
	}
	block := b[v2FixedLen:]
	need := t.addrLen()
	if len(block) < need {
		return nil, invalid("v2 " + t.String() + " block of " + strconv.Itoa(len(block)) + " bytes, shorter than its addresses")
	}
	h.Transport = t
	a := block
	switch t >> 4 {
	case 1:
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
	case 2:
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])), binary.BigEndian.Uint16(a[32:34]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])), binary.BigEndian.Uint16(a[34:36]))
	case 3:
		h.UnixSource = unixPath(a[:unixPathLen])
		h.UnixDestination = unixPath(a[unixPathLen : 2*unixPathLen])
	}
	rest := block[need:]
	if len(rest) == 0 {
		return h, nil
	}
	// The TLVs alias one copy of the header, which also serves the checksum.
	own := append([]byte(nil), b...)
	tlvBytes := own[v2FixedLen+need:]
	tlvs, err := parseTLVs(tlvBytes, "v2 TLV")
	if err != nil {
		if t == Unspec {
			// An UNSPEC block may hold addresses of an unknown kind: the
			// receiver should ignore it.
			return h, nil
		}
		return nil, err
	}
	h.TLVs = tlvs
	crcs := 0
	for _, v := range tlvs {
		if v.Type == TypeCRC32C {
			crcs++
		}
	}
	if crcs > 1 {
		return nil, invalid("v2 header with " + strconv.Itoa(crcs) + " CRC32C TLVs")
	}
	off := v2FixedLen + need // of the TLV in own
	for _, v := range tlvs {
		valueOff := off + 3
		off = valueOff + len(v.Value)
		switch v.Type {
		case TypeCRC32C:
			if err := checkCRC(own, valueOff, v.Value); err != nil {
				return nil, err
			}
		case TypeSSL:
			if _, err := parseSSL(v.Value); err != nil {
				return nil, err
			}
		}
	}
	return h, nil
}

// checkCRC verifies the CRC32C of header b whose checksum TLV value,
// sum, is at off in b.
func checkCRC(b []byte, off int, sum []byte) error {
	if len(sum) != 4 {
		return invalid("v2 CRC32C TLV of " + strconv.Itoa(len(sum)) + " bytes")
	}
	got := crcWithHole(b, off)
	if want := binary.BigEndian.Uint32(sum); got != want {
		return &Error{Kind: ErrChecksum, Detail: "got 0x" + strconv.FormatUint(uint64(want), 16) + ", computed 0x" + strconv.FormatUint(uint64(got), 16)}
	}
	return nil
}

// crcWithHole is the CRC32C of b with its 4 bytes at off taken as zeros.
func crcWithHole(b []byte, off int) uint32 {
	var zero [4]byte
	c := crc32.Update(0, castagnoli, b[:off])
	c = crc32.Update(c, castagnoli, zero[:])
	return crc32.Update(c, castagnoli, b[off+4:])
}

// unixPath decodes a 108-byte sun_path: up to its first NUL, or "@" and
// the name of an abstract socket (a leading NUL), trailing NULs dropped.
func unixPath(b []byte) string {
	if b[0] != 0 {
		for i, c := range b {
			if c == 0 {
				return string(b[:i])
			}
		}
		return string(b)
	}
	end := len(b)
	for end > 1 && b[end-1] == 0 {
		end--
	}
	if end == 1 {
		return ""
	}
	return "@" + string(b[1:end])
}
