package detect_test

// Limits of the ClientHello parser and the TLS matchers: every input is
// parsed by the in-place fast path (ParseClientHello on a hello in one
// record), the record-crossing path (ParseHelloRecords, and any hello split
// into records) and a reference written here from RFC 8446 section 4.1.2,
// RFC 6066 section 3, RFC 7301 section 3.1 and RFC 8701, straight and slow.
// The fast and the record-crossing paths must agree on every input, every
// prefix and every split; on a complete hello both must agree with the
// reference on the verdict and on what TLSInfo holds.

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/internal/testnet"
)

// helloSpec builds a ClientHello with each field chosen.
type helloSpec struct {
	legacy   uint16
	sid      int      // session id bytes
	suites   int      // cipher suite bytes
	comp     int      // compression method bytes
	exts     [][]byte // encoded extensions; nil with noExt: no extensions block
	noExt    bool
	recVer   byte // record layer minor version (legacy_record_version 3.x)
	trailing []byte
}

func tlsExt(typ uint16, data []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

// sniData is a server_name extension's data with the given entries.
func sniData(entries ...[]byte) []byte {
	var list []byte
	for _, e := range entries {
		list = append(list, e...)
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(list))), list...)
}

func sniEntry(typ byte, name string) []byte {
	return append([]byte{typ, byte(len(name) >> 8), byte(len(name))}, name...)
}

func alpnData(names ...string) []byte {
	var list []byte
	for _, n := range names {
		list = append(list, byte(len(n)))
		list = append(list, n...)
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(list))), list...)
}

func versionsData(vs ...uint16) []byte {
	b := []byte{byte(2 * len(vs))}
	for _, v := range vs {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return b
}

func (h helloSpec) body() []byte {
	legacy := h.legacy
	if legacy == 0 {
		legacy = 0x0303
	}
	b := binary.BigEndian.AppendUint16(nil, legacy)
	b = append(b, make([]byte, 32)...)
	b = append(b, byte(h.sid))
	b = append(b, make([]byte, h.sid)...)
	suites := h.suites
	if suites == 0 {
		suites = 2
	}
	b = binary.BigEndian.AppendUint16(b, uint16(suites))
	for i := range suites {
		b = append(b, byte(0x13+i))
	}
	comp := h.comp
	if comp == 0 {
		comp = 1
	}
	b = append(b, byte(comp))
	b = append(b, make([]byte, comp)...)
	if !h.noExt {
		var exts []byte
		for _, e := range h.exts {
			exts = append(exts, e...)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(exts)))
		b = append(b, exts...)
	}
	return b
}

// bytes is the hello in one record.
func (h helloSpec) bytes() []byte {
	body := h.body()
	hs := append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	hs = append(hs, h.trailing...)
	rv := h.recVer
	if rv == 0 {
		rv = 1
	}
	return append([]byte{0x16, 3, rv, byte(len(hs) >> 8), byte(len(hs))}, hs...)
}

// refInfo is what a parsed hello tells.
type refInfo struct {
	legacy   uint16
	sni      string
	alpn     []string
	versions []uint16
}

func (r refInfo) String() string {
	return fmt.Sprintf("legacy %#x sni %q alpn %q versions %x", r.legacy, r.sni, r.alpn, r.versions)
}

func infoOf(t detect.TLSInfo) refInfo {
	return refInfo{legacy: t.LegacyVersion, sni: t.ServerName(), alpn: t.ALPN(), versions: t.Versions()}
}

func (r refInfo) equal(o refInfo) bool {
	return r.legacy == o.legacy && r.sni == o.sni && slices.Equal(r.alpn, o.alpn) && slices.Equal(r.versions, o.versions)
}

// refHello parses a TLS stream's ClientHello. complete is false when the
// records end before the hello does (its verdict is then NeedMore or, for
// a malformed prefix, NoMatch, which the reference does not try to
// decide). Otherwise ok tells Match (with info) from NoMatch.
func refHello(b []byte) (complete, ok bool, info refInfo) {
	// The handshake bytes, record by record, as far as the hello goes.
	var hs []byte
	for p := 0; ; {
		if len(hs) >= 4 && len(hs) >= 4+hsLen(hs) {
			break
		}
		if p+5 > len(b) {
			return false, false, info
		}
		n := int(binary.BigEndian.Uint16(b[p+3:]))
		if b[p] != 0x16 || b[p+1] != 3 || b[p+2] > 4 || n == 0 || n > 1<<14 {
			return true, false, info
		}
		if p+5+n > len(b) {
			hs = append(hs, b[p+5:]...)
			if len(hs) >= 4 && len(hs) >= 4+hsLen(hs) {
				break
			}
			return false, false, info
		}
		hs = append(hs, b[p+5:p+5+n]...)
		p += 5 + n
	}
	if hs[0] != 1 {
		return true, false, info
	}
	full := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
	body := hs[4 : 4+full]
	ok, info = refHelloBody(body)
	return true, ok, info
}

// hsLen is the body length in a handshake message header.
func hsLen(hs []byte) int { return int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3]) }

// cut takes n bytes off the front of *b, or reports false.
func cut(b *[]byte, n int) ([]byte, bool) {
	if n < 0 || n > len(*b) {
		return nil, false
	}
	v := (*b)[:n]
	*b = (*b)[n:]
	return v, true
}

func u8(b *[]byte) (int, bool) {
	v, ok := cut(b, 1)
	if !ok {
		return 0, false
	}
	return int(v[0]), true
}

func u16(b *[]byte) (int, bool) {
	v, ok := cut(b, 2)
	if !ok {
		return 0, false
	}
	return int(binary.BigEndian.Uint16(v)), true
}

// vec takes a vector with a length prefix of size bytes.
func vec(b *[]byte, size int) ([]byte, bool) {
	var n int
	var ok bool
	if size == 1 {
		n, ok = u8(b)
	} else {
		n, ok = u16(b)
	}
	if !ok {
		return nil, false
	}
	return cut(b, n)
}

func refHelloBody(body []byte) (bool, refInfo) {
	var info refInfo
	if len(body) < 2+32+1+2+1 {
		return false, info
	}
	legacy, _ := u16(&body)
	if legacy>>8 != 3 {
		return false, info
	}
	info.legacy = uint16(legacy)
	cut(&body, 32)
	if sid, ok := vec(&body, 1); !ok || len(sid) > 32 {
		return false, info
	}
	if cs, ok := vec(&body, 2); !ok || len(cs) < 2 || len(cs)%2 != 0 {
		return false, info
	}
	if cm, ok := vec(&body, 1); !ok || len(cm) < 1 {
		return false, info
	}
	if len(body) == 0 {
		info.versions = []uint16{info.legacy}
		return true, info
	}
	exts, ok := vec(&body, 2)
	if !ok || len(body) != 0 {
		return false, info
	}
	seen := map[int]bool{}
	alpnBytes := 0
	for len(exts) > 0 {
		typ, ok1 := u16(&exts)
		data, ok2 := vec(&exts, 2)
		if !ok1 || !ok2 {
			return false, info
		}
		if typ == 0 || typ == 16 || typ == 43 {
			if seen[typ] {
				return false, info
			}
			seen[typ] = true
		}
		switch typ {
		case 0:
			list, ok := vec(&data, 2)
			if !ok || len(data) != 0 || len(list) < 3 {
				return false, info
			}
			for len(list) > 0 {
				nt, ok1 := u8(&list)
				name, ok2 := vec(&list, 2)
				if !ok1 || !ok2 || len(name) == 0 {
					return false, info
				}
				if nt == 0 && info.sni == "" && len(name) <= 255 {
					info.sni = string(name)
				}
			}
		case 16:
			list, ok := vec(&data, 2)
			if !ok || len(data) != 0 || len(list) < 2 {
				return false, info
			}
			for len(list) > 0 {
				name, ok := vec(&list, 1)
				if !ok || len(name) == 0 {
					return false, info
				}
				if alpnBytes+1+len(name) <= 256 {
					info.alpn = append(info.alpn, string(name))
					alpnBytes += 1 + len(name)
				}
			}
		case 43:
			list, ok := vec(&data, 1)
			if !ok || len(data) != 0 || len(list) < 2 || len(list)%2 != 0 {
				return false, info
			}
			for len(list) > 0 {
				v, _ := u16(&list)
				if v&0x0f0f == 0x0a0a && v>>8 == v&0xff {
					continue // GREASE
				}
				if len(info.versions) < 16 {
					info.versions = append(info.versions, uint16(v))
				}
			}
		}
	}
	if len(info.versions) == 0 {
		info.versions = []uint16{info.legacy}
	}
	return true, info
}

// bigHello fills a TLSInfo to its limits, to parse other hellos into.
func bigHello() detect.TLSInfo {
	vs := make([]uint16, 16)
	for i := range vs {
		vs[i] = 0x0300 + uint16(i)
	}
	h := helloSpec{exts: [][]byte{
		tlsExt(0, sniData(sniEntry(0, strings.Repeat("s", 255)))),
		tlsExt(16, alpnData(strings.Repeat("a", 255))),
		tlsExt(43, versionsData(vs...)),
	}}
	var info detect.TLSInfo
	if detect.ParseClientHello(h.bytes(), &info) != detect.Match {
		panic("bigHello does not parse")
	}
	return info
}

// checkHello compares the parsers on b. whole is set when b holds the
// whole stream the test built (so NeedMore means the reference agrees
// that the hello is incomplete).
func checkHello(t *testing.T, b []byte, used detect.TLSInfo) bool {
	t.Helper()
	var fast, slow detect.TLSInfo
	vf := detect.ParseClientHello(b, &fast)
	vs := detect.ParseHelloRecords(b, &slow)
	if vf != vs || fast != slow {
		t.Errorf("% x:\nin place %v %v\nrecords  %v %v", b, vf, infoOf(fast), vs, infoOf(slow))
		return false
	}
	var r detect.Result
	if vm := detect.TLSMatcher().Match(b, &r); vm != vf || r.TLS != fast {
		t.Errorf("% x: TLSMatcher %v, ParseClientHello %v", b, vm, vf)
		return false
	}
	reused := used
	if vr := detect.ParseClientHello(b, &reused); vf == detect.Match && reused != fast || vf != detect.Match && reused != used {
		t.Errorf("% x: a reused TLSInfo %v, a fresh one %v (%v)", b, infoOf(reused), infoOf(fast), vr)
		return false
	}
	reused = used
	if vr := detect.ParseHelloRecords(b, &reused); vf == detect.Match && reused != fast || vf != detect.Match && reused != used {
		t.Errorf("% x: records path, a reused TLSInfo %v, a fresh one %v (%v)", b, infoOf(reused), infoOf(fast), vr)
		return false
	}
	complete, ok, want := refHello(b)
	switch {
	case !complete && vf == detect.Match:
		t.Errorf("% x: Match on an incomplete hello", b)
		return false
	case complete && ok && (vf != detect.Match || !infoOf(fast).equal(want)):
		t.Errorf("% x: %v %v, want Match %v", b, vf, infoOf(fast), want)
		return false
	case complete && !ok && vf != detect.NoMatch:
		t.Errorf("% x: %v, want NoMatch", b, vf)
		return false
	}
	return true
}

// limitHellos are hellos with each field at, below and above its limits.
func limitHellos() []helloSpec {
	grease := []uint16{0x0a0a, 0x1a1a, 0xfafa}
	nearGrease := []uint16{0x0a0b, 0x1a0a, 0x0b0b, 0x0a1a, 0x2a2a}
	sixteen := make([]uint16, 17)
	for i := range sixteen {
		sixteen[i] = 0x0301 + uint16(i)
	}
	return []helloSpec{
		{noExt: true},
		{noExt: true, sid: 32, suites: 4, comp: 2, legacy: 0x0301},
		{noExt: true, sid: 33},
		{noExt: true, suites: 3},
		{noExt: true, legacy: 0x0403},
		{noExt: true, legacy: 0x02ff},
		{exts: nil},
		{exts: [][]byte{tlsExt(0xff01, nil), tlsExt(0x1234, []byte{1, 2, 3})}},
		{exts: [][]byte{tlsExt(0, sniData(sniEntry(0, "a")))}},
		{exts: [][]byte{tlsExt(0, sniData(sniEntry(0, strings.Repeat("b", 255))))}, recVer: 3},
		{exts: [][]byte{tlsExt(0, sniData(sniEntry(0, strings.Repeat("c", 256)), sniEntry(0, "second")))}},
		{exts: [][]byte{tlsExt(0, sniData(sniEntry(1, "other"), sniEntry(0, "host.example")))}},
		{exts: [][]byte{tlsExt(0, sniData(sniEntry(0, "")))}},
		{exts: [][]byte{tlsExt(0, sniData(sniEntry(0, "a"))), tlsExt(0, sniData(sniEntry(0, "b")))}},
		{exts: [][]byte{tlsExt(16, alpnData("h2", "http/1.1"))}},
		{exts: [][]byte{tlsExt(16, alpnData(strings.Repeat("x", 255)))}},
		{exts: [][]byte{tlsExt(16, alpnData(strings.Repeat("x", 254), "y"))}},
		{exts: [][]byte{tlsExt(16, alpnData(strings.Repeat("x", 250), "ab", "abc", "z"))}},
		{exts: [][]byte{tlsExt(16, alpnData(strings.Repeat("x", 252), "abc"))}},
		{exts: [][]byte{tlsExt(16, alpnData("h2")), tlsExt(16, alpnData("h2"))}},
		{exts: [][]byte{tlsExt(16, alpnData(""))}},
		// The smallest ALPN list (one name of one byte: 2 bytes) and one
		// byte less.
		{exts: [][]byte{tlsExt(16, alpnData("x"))}},
		{exts: [][]byte{tlsExt(16, []byte{0, 1, 0})}},
		{exts: [][]byte{tlsExt(43, versionsData(0x0304, 0x0303))}},
		{exts: [][]byte{tlsExt(43, versionsData(append(grease, 0x0304)...))}},
		{exts: [][]byte{tlsExt(43, versionsData(nearGrease...))}},
		{exts: [][]byte{tlsExt(43, versionsData(sixteen[:15]...))}},
		{exts: [][]byte{tlsExt(43, versionsData(sixteen[:16]...))}},
		{exts: [][]byte{tlsExt(43, versionsData(sixteen...))}},
		{exts: [][]byte{tlsExt(43, versionsData(append([]uint16{0x0a0a}, sixteen[:16]...)...))}},
		{exts: [][]byte{tlsExt(43, versionsData(0x0304)), tlsExt(43, versionsData(0x0304))}},
		{exts: [][]byte{tlsExt(43, []byte{3, 3, 4, 3})}},
		// server_name, ALPN and supported_versions as the last extension
		// with data too short for their length field (0 and 1 bytes): a
		// prefix cut at the field is NoMatch (it would run past the hello),
		// not NeedMore, in both parsers.
		{exts: [][]byte{tlsExt(0, nil)}},
		{exts: [][]byte{tlsExt(0, []byte{0})}},
		{exts: [][]byte{tlsExt(0xff01, []byte{0}), tlsExt(0, []byte{0})}},
		{exts: [][]byte{tlsExt(16, nil)}},
		{exts: [][]byte{tlsExt(16, []byte{0})}},
		{exts: [][]byte{tlsExt(43, nil)}},
		{exts: [][]byte{tlsExt(0, sniData(sniEntry(0, "x"))), tlsExt(43, nil)}},
		{exts: [][]byte{
			tlsExt(0xfafa, nil), tlsExt(0, sniData(sniEntry(0, "all.example"))), tlsExt(10, []byte{0, 2, 0, 29}),
			tlsExt(16, alpnData("h2", "http/1.1")), tlsExt(43, versionsData(0x3a3a, 0x0304, 0x0303)), tlsExt(0xff01, []byte{0}),
		}, trailing: []byte{0x17, 3, 3}},
	}
}

// tlsEdges are the values a byte of a hello is changed to.
func tlsEdges(c byte) []byte {
	return []byte{0, 1, 2, 3, 4, 5, 0x0a, 0x16, 0x1f, 0x20, 0x21, 0x26, 0x27, 0x28, 0x40, 0x7f, 0x80, 0xfe, 0xff, c - 1, c + 1}
}

func TestLimitsClientHello(t *testing.T) {
	defer boundTime(t)()
	dl := newDeadline(t)
	used := bigHello()
	for i, h := range limitHellos() {
		dl.check(t)
		one := h.bytes()
		forms := [][]byte{one, refragment(one, 1), refragment(one, 5), refragment(one, 64)}
		for _, b := range forms {
			// Every prefix: the parsers agree, and nothing matches early.
			step := 1
			if testnet.RaceEnabled {
				step = 5
			}
			for n := 0; n <= len(b); n += step {
				dl.check(t)
				if !checkHello(t, b[:n], used) {
					t.Fatalf("hello %d", i)
				}
			}
		}
		// Every byte changed, in one record and in records of 5 and 64
		// bytes; prefixes around the changed byte.
		k := 0
		for _, b := range [][]byte{one, forms[2], forms[3]} {
			buf := make([]byte, len(b))
			for pos := range b {
				dl.check(t)
				for _, v := range tlsEdges(b[pos]) {
					if v == b[pos] {
						continue
					}
					copy(buf, b)
					buf[pos] = v
					if k++; testnet.RaceEnabled && k%7 != 0 {
						continue // the race detector slows this tenfold and finds nothing in one goroutine
					}
					for n := pos; n <= min(pos+2, len(buf)); n++ {
						if !checkHello(t, buf[:n], used) {
							t.Fatalf("hello %d, byte %d = %#x", i, pos, v)
						}
					}
					if !checkHello(t, buf, used) {
						t.Fatalf("hello %d, byte %d = %#x", i, pos, v)
					}
				}
			}
		}
	}
}

// TestLimitsClientHelloFromGo parses the hello Go's crypto/tls sends (about
// 1.5 KiB with its post-quantum key share), captured by its record length,
// in one record and in records of several sizes.
func TestLimitsClientHelloFromGo(t *testing.T) {
	defer boundTime(t)()
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_ = tlsClientHandshake(c, "go.example", []string{"h2", "http/1.1"})
	}()
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(s, hdr); err != nil {
		t.Fatal(err)
	}
	hello := append(hdr, make([]byte, binary.BigEndian.Uint16(hdr[3:]))...)
	if _, err := io.ReadFull(s, hello[5:]); err != nil {
		t.Fatal(err)
	}
	used := bigHello()
	for _, size := range []int{1 << 14, 1, 2, 3, 7, 100, 512} {
		b := hello
		if size < len(hello) {
			b = refragment(hello, size)
		}
		step := max(1, len(b)/300)
		for n := 0; n < len(b); n += step {
			if !checkHello(t, b[:n], used) {
				t.Fatalf("records of %d, %d bytes", size, n)
			}
		}
		if !checkHello(t, b, used) {
			t.Fatalf("records of %d", size)
		}
		var info detect.TLSInfo
		if detect.ParseClientHello(b, &info) != detect.Match || info.ServerName() != "go.example" ||
			!slices.Equal(info.ALPN(), []string{"h2", "http/1.1"}) || !info.SupportsVersion(0x0304) {
			t.Fatalf("records of %d: %v", size, infoOf(info))
		}
	}
}

// refRecordStart decides TLSRecordMatcher from the first record headers
// and the first six handshake bytes (type, length, legacy_version), which
// may be split across records.
func refRecordStart(b []byte) detect.Verdict {
	var hs []byte
	for p := 0; len(hs) < 6; {
		// A record header, checked byte by byte for the first record and
		// as a whole (first byte alone while partial) for the next ones.
		if p >= len(b) {
			return detect.NeedMore
		}
		if b[p] != 0x16 {
			return detect.NoMatch
		}
		if p == 0 {
			if len(b) > 1 && b[1] != 3 || len(b) > 2 && b[2] > 4 {
				return detect.NoMatch
			}
			if len(b) > 4 {
				if n := int(binary.BigEndian.Uint16(b[3:])); n == 0 || n > 1<<14 {
					return detect.NoMatch
				}
			}
			if len(b) > 5 && b[5] != 1 {
				return detect.NoMatch
			}
		}
		if p+5 > len(b) {
			return detect.NeedMore
		}
		n := int(binary.BigEndian.Uint16(b[p+3:]))
		if b[p+1] != 3 || b[p+2] > 4 || n == 0 || n > 1<<14 {
			return detect.NoMatch
		}
		hs = append(hs, b[p+5:min(p+5+n, len(b))]...)
		if p+5+n > len(b) {
			break
		}
		p += 5 + n
	}
	if len(hs) < 6 {
		if len(hs) > 0 && hs[0] != 1 {
			return detect.NoMatch
		}
		return detect.NeedMore
	}
	if hs[0] != 1 || int(hs[1])<<16|int(hs[2])<<8|int(hs[3]) < 38 || hs[4] != 3 {
		return detect.NoMatch
	}
	return detect.Match
}

func TestLimitsTLSRecordMatcher(t *testing.T) {
	defer boundTime(t)()
	dl := newDeadline(t)
	m := detect.TLSRecordMatcher()
	check := func(b []byte) bool {
		var r detect.Result
		if got, want := m.Match(b, &r), refRecordStart(b); got != want {
			t.Errorf("% x: %v, want %v", b, got, want)
			return false
		}
		return true
	}
	var inputs [][]byte
	for _, h := range []helloSpec{{noExt: true}, {exts: [][]byte{tlsExt(0, sniData(sniEntry(0, "r.example")))}}} {
		one := h.bytes()
		inputs = append(inputs, one[:16], refragment(one, 1)[:40], refragment(one, 2)[:30], refragment(one, 5)[:20])
	}
	// A hello body of exactly the smallest length, one less, and a
	// record of 16384 bytes and one more.
	short := []byte{0x16, 3, 1, 0, 42, 1, 0, 0, 38, 3, 3}
	inputs = append(inputs, short, []byte{0x16, 3, 1, 0, 42, 1, 0, 0, 37, 3, 3},
		[]byte{0x16, 3, 4, 0x40, 0, 1, 0, 0x3f, 0xfc, 3, 4}, []byte{0x16, 3, 4, 0x40, 1, 1, 0, 0x3f, 0xfc, 3, 4},
		[]byte{0x16, 3, 1, 0, 6, 1, 0, 0, 38, 3, 3}, []byte{0x16, 3, 1, 0, 5, 1, 0, 0, 38, 3, 0x16, 3, 1, 0, 1, 3})
	for _, in := range inputs {
		dl.check(t)
		for n := 0; n <= len(in); n++ {
			if !check(in[:n]) {
				break
			}
		}
		buf := make([]byte, len(in))
		for pos := range in {
			for _, v := range tlsEdges(in[pos]) {
				copy(buf, in)
				buf[pos] = v
				for n := pos; n <= len(buf); n++ {
					if !check(buf[:n]) {
						break
					}
				}
			}
		}
	}
}

func tlsClientHandshake(c net.Conn, sni string, alpn []string) error {
	return tls.Client(c, &tls.Config{ServerName: sni, NextProtos: alpn, InsecureSkipVerify: true}).Handshake()
}
