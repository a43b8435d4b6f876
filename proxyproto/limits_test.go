package proxyproto_test

// Limits of the PROXY protocol parser: the v1 line at 106, 107 and 108
// bytes, ports at 0, 65535, 65536 and with leading zeros, address
// families, field counts and separators; the v2 header's version and
// command nibbles, each family's address block one byte short and exact,
// the longest header, TLVs cut in their type, length or value, the CRC32C
// TLV right, wrong, short and twice, SSL TLVs of 4 and 5 bytes; every
// prefix of each header truncated. scripts/mutate runs these (TestLimits*)
// for each planted bug; see TESTING.md.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"github.com/sniffsplice/sniff/proxyproto"
)

// boundTime makes the test binary fail at once, with every goroutine's
// stack, when a test runs past its bound: a planted bug that makes a parser
// loop then fails in seconds instead of hanging until the run's timeout.
func boundTime(t *testing.T) (stop func()) {
	const d = 60 * time.Second
	tm := time.AfterFunc(d, func() { panic(fmt.Sprintf("%s ran past %v: a parser loops", t.Name(), d)) })
	return func() { tm.Stop() }
}

func kindOf(err error) error {
	for _, k := range []error{proxyproto.ErrNoHeader, proxyproto.ErrTruncated, proxyproto.ErrInvalid, proxyproto.ErrChecksum} {
		if errors.Is(err, k) {
			return k
		}
	}
	return err
}

// v1Line pads "PROXY UNKNOWN " to exactly n bytes, CRLF included.
func v1Line(n int) string {
	head := "PROXY UNKNOWN "
	return head + strings.Repeat("u", n-len(head)-2) + "\r\n"
}

func TestLimitsParseV1(t *testing.T) {
	defer boundTime(t)()
	for _, tc := range []struct {
		in   string
		want error // nil: valid
	}{
		{"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n", nil},
		{"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", nil},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 0 0\r\n", nil},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 65536 1\r\n", proxyproto.ErrInvalid},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 1 99999\r\n", proxyproto.ErrInvalid},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 01 1\r\n", proxyproto.ErrInvalid},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 1 00\r\n", proxyproto.ErrInvalid},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 123456 1\r\n", proxyproto.ErrInvalid},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 1a 1\r\n", proxyproto.ErrInvalid},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 /0 1\r\n", proxyproto.ErrInvalid},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 :0 1\r\n", proxyproto.ErrInvalid},
		{"PROXY TCP4 2001:db8::1 198.51.100.1 1 1\r\n", proxyproto.ErrInvalid},
		{"PROXY TCP6 192.0.2.1 2001:db8::2 1 1\r\n", proxyproto.ErrInvalid},
		{"PROXY TCP6 fe80::1%eth0 2001:db8::2 1 1\r\n", proxyproto.ErrInvalid},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 1\r\n", proxyproto.ErrInvalid},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 1 2 3\r\n", proxyproto.ErrInvalid},
		{"PROXY TCP4 192.0.2.1  198.51.100.1 1 2\r\n", proxyproto.ErrInvalid},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 1 2 \r\n", proxyproto.ErrInvalid},
		{"PROXY TCP4  192.0.2.1 198.51.100.1 1 2\r\n", proxyproto.ErrInvalid},
		{"PROXY UDP4 192.0.2.1 198.51.100.1 1 2\r\n", proxyproto.ErrInvalid},
		{"PROXY UNKNOWN\r\n", nil},
		{"PROXY UNKNOWN anything at all\r\n", nil},
		{"PROXY \r\n", proxyproto.ErrInvalid},
		{"PROXY\r\n", proxyproto.ErrInvalid},
		{"PROXYX\r\n", proxyproto.ErrInvalid},
		{"PROXY UNKNOWN\n", proxyproto.ErrInvalid},
		{"PROXY UNKNOWN\rx\n", proxyproto.ErrInvalid},
		{"PROXY UNKNOWN\r", proxyproto.ErrTruncated},
		{v1Line(106), nil},
		{v1Line(107), nil},
		{v1Line(108), proxyproto.ErrInvalid},
		{v1Line(108)[:106], proxyproto.ErrTruncated},
		{v1Line(108)[:107], proxyproto.ErrInvalid},
		{"PROXY UNKNOWN " + strings.Repeat("u", 93), proxyproto.ErrInvalid}, // 107 bytes, no CR at all
		{"PROXY UNKNOWN " + strings.Repeat("u", 92), proxyproto.ErrTruncated},
		{"PRO", proxyproto.ErrTruncated},
		{"PRX", proxyproto.ErrNoHeader},
		{"", proxyproto.ErrTruncated},
		{"GET / HTTP/1.1\r\n", proxyproto.ErrNoHeader},
	} {
		in := tc.in
		if tc.want == nil {
			in += "data" // what follows the header is not part of it
		}
		h, n, err := proxyproto.Parse([]byte(in))
		if tc.want == nil && err != nil || tc.want != nil && kindOf(err) != tc.want {
			t.Errorf("%q: %v, want %v", tc.in, err, tc.want)
			continue
		}
		if tc.want == nil && (n != len(tc.in) || h.Version != proxyproto.V1) {
			t.Errorf("%q: %d bytes, version %v", tc.in, n, h.Version)
		}
	}
	// "PROXY " alone is a line whose protocol is empty.
	var pe *proxyproto.Error
	if _, _, err := proxyproto.Parse([]byte("PROXY \r\n")); !errors.As(err, &pe) || !strings.Contains(pe.Detail, "protocol") {
		t.Errorf("%q: %v, want an invalid protocol", "PROXY \r\n", err)
	}
	// Every prefix of a valid line is truncated, and the header is all of it.
	line := "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n"
	for i := range len(line) {
		if _, _, err := proxyproto.Parse([]byte(line[:i])); kindOf(err) != proxyproto.ErrTruncated {
			t.Errorf("%d of %d bytes: %v", i, len(line), err)
		}
	}
	h, _, err := proxyproto.Parse([]byte(line))
	if err != nil || h.Source.String() != "192.0.2.1:56324" || h.Destination.String() != "198.51.100.1:443" || h.Transport != proxyproto.TCP4 {
		t.Errorf("%q: %v %v", line, h, err)
	}
}

// v2h builds a version 2 header: version and command byte, transport, the
// block (addresses and TLVs).
func v2h(verCmd, transport byte, block []byte) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n")
	b = append(b, verCmd, transport)
	b = binary.BigEndian.AppendUint16(b, uint16(len(block)))
	return append(b, block...)
}

func tlvb(typ byte, v []byte) []byte {
	return append([]byte{typ, byte(len(v) >> 8), byte(len(v))}, v...)
}

// withCRC appends a CRC32C TLV to a v2 header and fills it in.
func withCRC(h []byte) []byte {
	h = append(h, tlvb(0x03, make([]byte, 4))...)
	binary.BigEndian.PutUint16(h[14:], uint16(len(h)-16))
	sum := crc32.Checksum(h, crc32.MakeTable(crc32.Castagnoli))
	binary.BigEndian.PutUint32(h[len(h)-4:], sum)
	return h
}

func TestLimitsParseV2(t *testing.T) {
	defer boundTime(t)()
	inet := make([]byte, 12)
	inet6 := make([]byte, 36)
	unix := make([]byte, 216)
	copy(unix, "/src")
	copy(unix[108:], "\x00abstract")
	crcd := withCRC(v2h(0x21, 0x11, inet))
	badCRC := append([]byte(nil), crcd...)
	badCRC[len(badCRC)-1] ^= 1
	twoCRC := withCRC(withCRC(v2h(0x21, 0x11, inet)))
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"inet", v2h(0x21, 0x11, inet), nil},
		{"inet udp", v2h(0x21, 0x12, inet), nil},
		{"inet short", v2h(0x21, 0x11, inet[:11]), proxyproto.ErrInvalid},
		{"inet6", v2h(0x21, 0x21, inet6), nil},
		{"inet6 short", v2h(0x21, 0x21, inet6[:35]), proxyproto.ErrInvalid},
		{"unix", v2h(0x21, 0x31, unix), nil},
		{"unix dgram", v2h(0x21, 0x32, unix), nil},
		{"unix short", v2h(0x21, 0x31, unix[:215]), proxyproto.ErrInvalid},
		{"unspec", v2h(0x21, 0x00, nil), nil},
		{"unspec with junk", v2h(0x21, 0x00, []byte{1, 2}), nil},
		{"local", v2h(0x20, 0x11, nil), nil},
		{"local, any family", v2h(0x20, 0xff, []byte{1}), nil},
		{"command 2", v2h(0x22, 0x11, inet), proxyproto.ErrInvalid},
		{"command 15", v2h(0x2f, 0x11, inet), proxyproto.ErrInvalid},
		{"version 1", v2h(0x11, 0x11, inet), proxyproto.ErrInvalid},
		{"version 3", v2h(0x31, 0x11, inet), proxyproto.ErrInvalid},
		{"family 4", v2h(0x21, 0x41, inet), proxyproto.ErrInvalid},
		{"transport 3", v2h(0x21, 0x13, inet), proxyproto.ErrInvalid},
		{"unspec transport 1", v2h(0x21, 0x01, nil), proxyproto.ErrInvalid},
		{"tlv", v2h(0x21, 0x11, append(inet, tlvb(0x01, []byte("h2"))...)), nil},
		{"empty tlv", v2h(0x21, 0x11, append(inet, tlvb(0x04, nil)...)), nil},
		{"tlv cut in its length", v2h(0x21, 0x11, append(inet, 0x01, 0)), proxyproto.ErrInvalid},
		{"tlv cut in its type", v2h(0x21, 0x11, append(inet, 0x01)), proxyproto.ErrInvalid},
		{"tlv value cut", v2h(0x21, 0x11, append(inet, 0x01, 0, 3, 'h', '2')), proxyproto.ErrInvalid},
		{"crc", crcd, nil},
		{"crc wrong", badCRC, proxyproto.ErrChecksum},
		{"crc twice", twoCRC, proxyproto.ErrInvalid},
		{"crc of 3 bytes", v2h(0x21, 0x11, append(inet, tlvb(0x03, []byte{0, 0, 0})...)), proxyproto.ErrInvalid},
		{"crc of 5 bytes", v2h(0x21, 0x11, append(inet, tlvb(0x03, make([]byte, 5))...)), proxyproto.ErrInvalid},
		{"ssl", v2h(0x21, 0x11, append(inet, tlvb(0x20, []byte{1, 0, 0, 0, 0})...)), nil},
		{"ssl with sub", v2h(0x21, 0x11, append(inet, tlvb(0x20, append([]byte{1, 0, 0, 0, 0}, tlvb(0x21, []byte("TLSv1.3"))...))...)), nil},
		{"ssl of 4 bytes", v2h(0x21, 0x11, append(inet, tlvb(0x20, []byte{1, 0, 0, 0})...)), proxyproto.ErrInvalid},
		{"ssl sub cut", v2h(0x21, 0x11, append(inet, tlvb(0x20, []byte{1, 0, 0, 0, 0, 0x21, 0})...)), proxyproto.ErrInvalid},
		{"longest", v2h(0x21, 0x11, append(inet, tlvb(0x04, make([]byte, 0xffff-12-3))...)), nil},
	} {
		h, n, err := proxyproto.Parse(append(tc.in, "data"...))
		if tc.want == nil && err != nil || tc.want != nil && kindOf(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			continue
		}
		if tc.want != nil {
			continue
		}
		if n != len(tc.in) || h.Version != proxyproto.V2 {
			t.Errorf("%s: %d bytes of %d, version %v", tc.name, n, len(tc.in), h.Version)
		}
		// Every prefix is truncated (a long one: a sample).
		step := max(1, len(tc.in)/200)
		for i := 0; i < len(tc.in); i += step {
			if _, _, err := proxyproto.Parse(tc.in[:i]); kindOf(err) != proxyproto.ErrTruncated {
				t.Errorf("%s: %d of %d bytes: %v", tc.name, i, len(tc.in), err)
				break
			}
		}
	}
	h, _, err := proxyproto.Parse(v2h(0x21, 0x31, unix))
	if err != nil || h.UnixSource != "/src" || h.UnixDestination != "@abstract" {
		t.Errorf("unix paths: %+v %v", h, err)
	}
	// All-zero paths (an abstract name of nothing) are empty, not "@".
	h, _, err = proxyproto.Parse(v2h(0x21, 0x31, make([]byte, 216)))
	if err != nil || h.UnixSource != "" || h.UnixDestination != "" {
		t.Errorf("zero unix paths: %+v %v", h, err)
	}
	one := make([]byte, 216)
	one[1] = 'x'
	h, _, err = proxyproto.Parse(v2h(0x21, 0x31, one))
	if err != nil || h.UnixSource != "@x" || h.UnixDestination != "" {
		t.Errorf("abstract unix path of one byte: %+v %v", h, err)
	}
	in := append([]byte(nil), inet...)
	copy(in, []byte{192, 0, 2, 1, 198, 51, 100, 1, 0xdc, 0x04, 0x01, 0xbb})
	h, _, err = proxyproto.Parse(v2h(0x21, 0x11, in))
	if err != nil || h.Source.String() != "192.0.2.1:56324" || h.Destination.String() != "198.51.100.1:443" || h.Command != proxyproto.Proxy {
		t.Errorf("inet addresses: %+v %v", h, err)
	}
	// The signature, byte by byte.
	sig := "\r\n\r\n\x00\r\nQUIT\n"
	for i := 1; i <= len(sig); i++ {
		if _, _, err := proxyproto.Parse([]byte(sig[:i])); kindOf(err) != proxyproto.ErrTruncated {
			t.Errorf("%d bytes of the signature: %v", i, err)
		}
		bad := []byte(sig[:i])
		bad[i-1] ^= 0x40
		if _, _, err := proxyproto.Parse(bad); i > 1 && kindOf(err) != proxyproto.ErrNoHeader {
			t.Errorf("signature byte %d changed: %v", i-1, err)
		}
	}
}
