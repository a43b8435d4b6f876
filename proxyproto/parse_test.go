package proxyproto_test

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/proxyproto"
)

const sig = "\r\n\r\n\x00\r\nQUIT\n"

// v2 builds a version 2 header by hand: signature, version/command byte,
// transport byte, the block's length and the block.
func v2(verCmd, fam byte, block string) string {
	n := len(block)
	return sig + string([]byte{verCmd, fam, byte(n >> 8), byte(n)}) + block
}

func tlv(t byte, v string) string { return string([]byte{t, byte(len(v) >> 8), byte(len(v))}) + v }

const (
	ip4Block = "\xc0\x00\x02\x01\xc6\x33\x64\x02\x04\xd2\x01\xbb" // 192.0.2.1:1234 -> 198.51.100.2:443
	ip6Block = "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01" +
		"\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x04\xd2\x01\xbb" // [2001:db8::1]:1234 -> [2001:db8::2]:443
)

var (
	src4 = netip.MustParseAddrPort("192.0.2.1:1234")
	dst4 = netip.MustParseAddrPort("198.51.100.2:443")
	src6 = netip.MustParseAddrPort("[2001:db8::1]:1234")
	dst6 = netip.MustParseAddrPort("[2001:db8::2]:443")
)

func unixBlock(src, dst string) string {
	pad := func(p string) string { return p + strings.Repeat("\x00", 108-len(p)) }
	return pad(src) + pad(dst)
}

func TestParseValid(t *testing.T) {
	sslValue := "\x07\x00\x00\x00\x00" + tlv(0x21, "TLSv1.3") + tlv(0x22, "client.test") + tlv(0x23, "TLS_AES_128_GCM_SHA256") +
		tlv(0x24, "SHA256") + tlv(0x25, "EC256") + tlv(0x99, "future")
	for _, tc := range []struct {
		name string
		in   string
		want proxyproto.Header
	}{
		{"v1-tcp4", "PROXY TCP4 192.0.2.1 198.51.100.2 1234 443\r\n",
			proxyproto.Header{Version: 1, Command: proxyproto.Proxy, Transport: proxyproto.TCP4, Source: src4, Destination: dst4}},
		{"v1-tcp6", "PROXY TCP6 2001:db8::1 2001:db8::2 1234 443\r\n",
			proxyproto.Header{Version: 1, Command: proxyproto.Proxy, Transport: proxyproto.TCP6, Source: src6, Destination: dst6}},
		{"v1-tcp6-mapped", "PROXY TCP6 ::ffff:192.0.2.1 ::FFFF:198.51.100.2 0 65535\r\n",
			proxyproto.Header{Version: 1, Command: proxyproto.Proxy, Transport: proxyproto.TCP6,
				Source: netip.MustParseAddrPort("[::ffff:192.0.2.1]:0"), Destination: netip.MustParseAddrPort("[::ffff:198.51.100.2]:65535")}},
		{"v1-unknown", "PROXY UNKNOWN\r\n", proxyproto.Header{Version: 1, Command: proxyproto.Proxy}},
		{"v1-unknown-anything", "PROXY UNKNOWN whatever \x01 is here\r\n", proxyproto.Header{Version: 1, Command: proxyproto.Proxy}},
		{"v1-longest", "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
			proxyproto.Header{Version: 1, Command: proxyproto.Proxy}},
		{"v2-tcp4", v2(0x21, 0x11, ip4Block),
			proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.TCP4, Source: src4, Destination: dst4}},
		{"v2-udp4", v2(0x21, 0x12, ip4Block),
			proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.UDP4, Source: src4, Destination: dst4}},
		{"v2-tcp6", v2(0x21, 0x21, ip6Block),
			proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.TCP6, Source: src6, Destination: dst6}},
		{"v2-udp6", v2(0x21, 0x22, ip6Block),
			proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.UDP6, Source: src6, Destination: dst6}},
		{"v2-unix-stream", v2(0x21, 0x31, unixBlock("/run/client.sock", "/run/server.sock")),
			proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.UnixStream,
				UnixSource: "/run/client.sock", UnixDestination: "/run/server.sock"}},
		{"v2-unix-dgram-abstract", v2(0x21, 0x32, unixBlock("\x00abstract", "/dst")),
			proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.UnixDgram,
				UnixSource: "@abstract", UnixDestination: "/dst"}},
		{"v2-local-ignores-block", v2(0x20, 0x11, ip4Block+"garbage"),
			proxyproto.Header{Version: 2, Command: proxyproto.Local}},
		{"v2-local-empty", v2(0x20, 0x00, ""), proxyproto.Header{Version: 2, Command: proxyproto.Local}},
		{"v2-unspec-tlvs", v2(0x21, 0x00, tlv(0x02, "a.example")),
			proxyproto.Header{Version: 2, Command: proxyproto.Proxy, TLVs: []proxyproto.TLV{{Type: proxyproto.TypeAuthority, Value: []byte("a.example")}}}},
		{"v2-unspec-opaque-block", v2(0x21, 0x00, "\x01\x02"), proxyproto.Header{Version: 2, Command: proxyproto.Proxy}},
		{"v2-tlvs", v2(0x21, 0x11, ip4Block+tlv(0x01, "h2")+tlv(0x02, "sni.example")+tlv(0x04, "")+tlv(0x05, "id-1")+
			tlv(0x30, "blue")+tlv(0xea, "\x01vpce-1")+tlv(0x20, sslValue)),
			proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.TCP4, Source: src4, Destination: dst4,
				TLVs: []proxyproto.TLV{
					{Type: proxyproto.TypeALPN, Value: []byte("h2")},
					{Type: proxyproto.TypeAuthority, Value: []byte("sni.example")},
					{Type: proxyproto.TypeNoop, Value: []byte{}},
					{Type: proxyproto.TypeUniqueID, Value: []byte("id-1")},
					{Type: proxyproto.TypeNetNS, Value: []byte("blue")},
					{Type: 0xea, Value: []byte("\x01vpce-1")},
					{Type: proxyproto.TypeSSL, Value: []byte(sslValue)},
				}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in + "DATA")
			h, n, err := proxyproto.Parse(in)
			require.NoError(t, err)
			assert.Equal(t, len(tc.in), n)
			assert.Equal(t, tc.want, *h)
			// The header owns its memory.
			for i := range in {
				in[i] = 0
			}
			assert.Equal(t, tc.want, *h)
			// Every proper prefix is a truncated header.
			for i := range len(tc.in) {
				_, _, err := proxyproto.Parse([]byte(tc.in[:i]))
				require.ErrorIs(t, err, proxyproto.ErrTruncated, "prefix of %d bytes", i)
			}
		})
	}
}

func TestParseAccessors(t *testing.T) {
	sslValue := "\x07\x00\x00\x00\x00" + tlv(0x21, "TLSv1.3") + tlv(0x22, "client.test") + tlv(0x23, "TLS_AES_128_GCM_SHA256") +
		tlv(0x24, "SHA256") + tlv(0x25, "EC256") + tlv(0x26, "X25519") + tlv(0x27, "ecdsa_secp256r1_sha256") + tlv(0x28, "\x30\x82DER")
	in := v2(0x21, 0x21, ip6Block+tlv(0x01, "h2")+tlv(0x02, "sni.example")+tlv(0x05, "id-1")+tlv(0x30, "blue")+tlv(0x20, sslValue))
	h, _, err := proxyproto.Parse([]byte(in))
	require.NoError(t, err)
	assert.True(t, h.Proxied())
	assert.Equal(t, &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1234}, h.SourceAddr())
	assert.Equal(t, &net.TCPAddr{IP: net.ParseIP("2001:db8::2"), Port: 443}, h.DestinationAddr())
	assert.Equal(t, "h2", h.ALPN())
	assert.Equal(t, "sni.example", h.Authority())
	assert.Equal(t, []byte("id-1"), h.UniqueID())
	assert.Equal(t, "blue", h.NetNS())
	ssl, ok := h.SSL()
	require.True(t, ok)
	assert.Equal(t, uint8(proxyproto.ClientSSL|proxyproto.ClientCertConn|proxyproto.ClientCertSess), ssl.Client)
	assert.True(t, ssl.ClientCertVerified())
	assert.Equal(t, "TLSv1.3", ssl.Version())
	assert.Equal(t, "client.test", ssl.CN())
	assert.Equal(t, "TLS_AES_128_GCM_SHA256", ssl.Cipher())
	assert.Equal(t, "SHA256", ssl.SigAlg())
	assert.Equal(t, "EC256", ssl.KeyAlg())
	assert.Equal(t, "X25519", ssl.Group())
	assert.Equal(t, "ecdsa_secp256r1_sha256", ssl.SigScheme())
	assert.Equal(t, []byte("\x30\x82DER"), ssl.ClientCert())
	assert.Equal(t, proxyproto.TLV{Type: proxyproto.TypeSSL, Value: []byte(sslValue)}, ssl.TLV(), "SSL.TLV encodes what it decoded")
	assert.Equal(t, "PROXY v2 TCP6 [2001:db8::1]:1234 -> [2001:db8::2]:443 (5 TLVs)", h.String())

	udp := proxyproto.Header{Command: proxyproto.Proxy, Transport: proxyproto.UDP4, Source: src4, Destination: dst4}
	assert.Equal(t, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1).To4(), Port: 1234}, udp.SourceAddr())
	unix := proxyproto.Header{Command: proxyproto.Proxy, Transport: proxyproto.UnixDgram, UnixSource: "/a", UnixDestination: "@b"}
	assert.Equal(t, &net.UnixAddr{Net: "unixgram", Name: "/a"}, unix.SourceAddr())
	assert.Equal(t, &net.UnixAddr{Net: "unixgram", Name: "@b"}, unix.DestinationAddr())
	local := proxyproto.Header{Version: 2, Command: proxyproto.Local, Transport: proxyproto.TCP4, Source: src4}
	assert.False(t, local.Proxied())
	assert.Nil(t, local.SourceAddr(), "a LOCAL header's addresses are not to be used")
	_, ok = local.SSL()
	assert.False(t, ok)
	assert.Equal(t, "", local.Authority())
}

func TestParseInvalid(t *testing.T) {
	long := "PROXY UNKNOWN " + strings.Repeat("f", 107-len("PROXY UNKNOWN ")-2+1) + "\r\n" // 108 bytes
	crcHdr := func(sum string) string { return v2(0x21, 0x11, ip4Block+tlv(0x03, sum)) }
	for _, tc := range []struct {
		name, in string
		kind     error
	}{
		{"not-a-header", "GET / HTTP/1.1\r\n", proxyproto.ErrNoHeader},
		{"almost-v2", "\r\n\r\n\x00\r\nQUIX\n", proxyproto.ErrNoHeader},
		{"almost-v1", "PROXI TCP4", proxyproto.ErrNoHeader},
		{"empty", "", proxyproto.ErrTruncated},
		{"v1-no-space", "PROXY\r\n", proxyproto.ErrInvalid},
		{"v1-lower-case", "PROXY tcp4 192.0.2.1 198.51.100.2 1234 443\r\n", proxyproto.ErrInvalid},
		{"v1-udp", "PROXY UDP4 192.0.2.1 198.51.100.2 1234 443\r\n", proxyproto.ErrInvalid},
		{"v1-leading-zero-port", "PROXY TCP4 192.0.2.1 198.51.100.2 01234 443\r\n", proxyproto.ErrInvalid},
		{"v1-leading-zero-addr", "PROXY TCP4 192.0.2.01 198.51.100.2 1234 443\r\n", proxyproto.ErrInvalid},
		{"v1-port-65536", "PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n", proxyproto.ErrInvalid},
		{"v1-port-sign", "PROXY TCP4 192.0.2.1 198.51.100.2 +1 443\r\n", proxyproto.ErrInvalid},
		{"v1-v6-in-tcp4", "PROXY TCP4 2001:db8::1 198.51.100.2 1234 443\r\n", proxyproto.ErrInvalid},
		{"v1-v4-in-tcp6", "PROXY TCP6 192.0.2.1 2001:db8::2 1234 443\r\n", proxyproto.ErrInvalid},
		{"v1-zone", "PROXY TCP6 fe80::1%eth0 2001:db8::2 1234 443\r\n", proxyproto.ErrInvalid},
		{"v1-double-space", "PROXY TCP4 192.0.2.1  198.51.100.2 1234 443\r\n", proxyproto.ErrInvalid},
		{"v1-three-fields", "PROXY TCP4 192.0.2.1 198.51.100.2 1234\r\n", proxyproto.ErrInvalid},
		{"v1-five-fields", "PROXY TCP4 192.0.2.1 198.51.100.2 1234 443 5\r\n", proxyproto.ErrInvalid},
		{"v1-trailing-space", "PROXY TCP4 192.0.2.1 198.51.100.2 1234 443 \r\n", proxyproto.ErrInvalid},
		{"v1-bare-lf", "PROXY TCP4 192.0.2.1 198.51.100.2 1234 443\n", proxyproto.ErrInvalid},
		{"v1-cr-without-lf", "PROXY TCP4 192.0.2.1\r198.51.100.2 1234 443\r\n", proxyproto.ErrInvalid},
		{"v1-108-bytes", long, proxyproto.ErrInvalid},
		{"v2-version-1", v2(0x11, 0x11, ip4Block), proxyproto.ErrInvalid},
		{"v2-command-2", v2(0x22, 0x11, ip4Block), proxyproto.ErrInvalid},
		{"v2-family-4", v2(0x21, 0x41, ip4Block), proxyproto.ErrInvalid},
		{"v2-protocol-3", v2(0x21, 0x13, ip4Block), proxyproto.ErrInvalid},
		{"v2-unspec-stream", v2(0x21, 0x01, ""), proxyproto.ErrInvalid},
		{"v2-short-ip4", v2(0x21, 0x11, ip4Block[:11]), proxyproto.ErrInvalid},
		{"v2-short-ip6", v2(0x21, 0x21, ip4Block), proxyproto.ErrInvalid},
		{"v2-short-unix", v2(0x21, 0x31, ip6Block), proxyproto.ErrInvalid},
		{"v2-tlv-cut-in-length", v2(0x21, 0x11, ip4Block+"\x01\x00"), proxyproto.ErrInvalid},
		{"v2-tlv-overruns", v2(0x21, 0x11, ip4Block+"\x01\x00\x05ab"), proxyproto.ErrInvalid},
		{"v2-crc-mismatch", crcHdr("\x00\x00\x00\x00"), proxyproto.ErrChecksum},
		{"v2-crc-3-bytes", crcHdr("\x00\x00\x00"), proxyproto.ErrInvalid},
		{"v2-ssl-short", v2(0x21, 0x11, ip4Block+tlv(0x20, "\x01\x00\x00")), proxyproto.ErrInvalid},
		{"v2-ssl-bad-sub-tlv", v2(0x21, 0x11, ip4Block+tlv(0x20, "\x01\x00\x00\x00\x00\x21\x00\x09TLS")), proxyproto.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, n, err := proxyproto.Parse([]byte(tc.in))
			require.ErrorIs(t, err, tc.kind)
			assert.Nil(t, h)
			assert.Zero(t, n)
			var e *proxyproto.Error
			require.True(t, errors.As(err, &e))
			assert.Equal(t, tc.kind, e.Kind)
			assert.NotContains(t, err.Error(), "\n")
			assert.True(t, strings.HasPrefix(err.Error(), "proxyproto: "), err.Error())
		})
	}
	// Two CRC32C TLVs, each with the right value for a header that has
	// the other one zeroed, are still refused.
	h := proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.TCP4, Source: src4, Destination: dst4,
		TLVs: []proxyproto.TLV{{Type: proxyproto.TypeCRC32C}}}
	b, err := h.Format()
	require.NoError(t, err)
	b = append(b, tlv(0x03, "\x00\x00\x00\x00")...)
	b[15] += 7
	_, _, err = proxyproto.Parse(b)
	require.ErrorIs(t, err, proxyproto.ErrInvalid)
}

func TestFormatErrors(t *testing.T) {
	tcp4 := proxyproto.Header{Version: 1, Command: proxyproto.Proxy, Transport: proxyproto.TCP4, Source: src4, Destination: dst4}
	mod := func(f func(h *proxyproto.Header)) proxyproto.Header { h := tcp4; f(&h); return h }
	for _, tc := range []struct {
		name string
		h    proxyproto.Header
	}{
		{"version-3", mod(func(h *proxyproto.Header) { h.Version = 3 })},
		{"v1-udp", mod(func(h *proxyproto.Header) { h.Transport = proxyproto.UDP4 })},
		{"v1-unix", mod(func(h *proxyproto.Header) { h.Transport = proxyproto.UnixStream })},
		{"v1-tlvs", mod(func(h *proxyproto.Header) { h.TLVs = []proxyproto.TLV{{Type: proxyproto.TypeNoop}} })},
		{"v1-tcp4-with-v6", mod(func(h *proxyproto.Header) { h.Source = src6 })},
		{"v1-tcp6-without-addresses", proxyproto.Header{Version: 1, Command: proxyproto.Proxy, Transport: proxyproto.TCP6}},
		{"v1-command-7", mod(func(h *proxyproto.Header) { h.Command = 7 })},
		{"v2-command-7", mod(func(h *proxyproto.Header) { h.Version, h.Command = 2, 7 })},
		{"v2-transport-0x13", mod(func(h *proxyproto.Header) { h.Version, h.Transport = 2, 0x13 })},
		{"v2-tcp4-with-v6", mod(func(h *proxyproto.Header) { h.Version, h.Destination = 2, dst6 })},
		{"v2-tcp6-without-addresses", proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.TCP6}},
		{"v2-local-tlvs", proxyproto.Header{Version: 2, Command: proxyproto.Local, TLVs: []proxyproto.TLV{{Type: proxyproto.TypeNoop}}}},
		{"v2-unique-id-129", mod(func(h *proxyproto.Header) {
			h.Version, h.TLVs = 2, []proxyproto.TLV{{Type: proxyproto.TypeUniqueID, Value: bytes.Repeat([]byte("x"), 129)}}
		})},
		{"v2-two-crcs", mod(func(h *proxyproto.Header) {
			h.Version, h.TLVs = 2, []proxyproto.TLV{{Type: proxyproto.TypeCRC32C}, {Type: proxyproto.TypeCRC32C}}
		})},
		{"v2-tlv-65536", mod(func(h *proxyproto.Header) {
			h.Version, h.TLVs = 2, []proxyproto.TLV{{Type: 0xe0, Value: make([]byte, 65536)}}
		})},
		{"v2-block-over-65535", mod(func(h *proxyproto.Header) {
			h.Version, h.TLVs = 2, []proxyproto.TLV{{Type: 0xe0, Value: make([]byte, 40000)}, {Type: 0xe1, Value: make([]byte, 40000)}}
		})},
		{"v2-unix-path-109", proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.UnixStream,
			UnixSource: strings.Repeat("p", 109), UnixDestination: "/d"}},
		{"v2-unix-abstract-108", proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.UnixStream,
			UnixSource: "/s", UnixDestination: "@" + strings.Repeat("p", 108)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.h.Format()
			require.ErrorIs(t, err, proxyproto.ErrInvalid)
			assert.Empty(t, b)
			n, err := tc.h.WriteTo(&bytes.Buffer{})
			require.ErrorIs(t, err, proxyproto.ErrInvalid)
			assert.Zero(t, n)
		})
	}
	// AppendFormat leaves b as it was on an error.
	bad := mod(func(h *proxyproto.Header) { h.Version, h.Command = 2, 7 })
	b, err := bad.AppendFormat([]byte("keep"))
	require.Error(t, err)
	assert.Equal(t, "keep", string(b))
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    proxyproto.Header
		want string
	}{
		{"v1-tcp4", proxyproto.Header{Version: 1, Command: proxyproto.Proxy, Transport: proxyproto.TCP4, Source: src4, Destination: dst4},
			"PROXY TCP4 192.0.2.1 198.51.100.2 1234 443\r\n"},
		{"v1-tcp4-from-mapped", proxyproto.Header{Version: 1, Command: proxyproto.Proxy, Transport: proxyproto.TCP4,
			Source: netip.MustParseAddrPort("[::ffff:192.0.2.1]:1234"), Destination: dst4},
			"PROXY TCP4 192.0.2.1 198.51.100.2 1234 443\r\n"},
		{"v1-tcp6-zone-dropped", proxyproto.Header{Version: 1, Command: proxyproto.Proxy, Transport: proxyproto.TCP6,
			Source: netip.MustParseAddrPort("[fe80::1%eth0]:1"), Destination: dst6},
			"PROXY TCP6 fe80::1 2001:db8::2 1 443\r\n"},
		{"v1-tcp6-from-v4", proxyproto.Header{Version: 1, Command: proxyproto.Proxy, Transport: proxyproto.TCP6, Source: src4, Destination: dst6},
			"PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1234 443\r\n"},
		{"v1-unspec", proxyproto.Header{Version: 1, Command: proxyproto.Proxy}, "PROXY UNKNOWN\r\n"},
		{"v1-local", proxyproto.Header{Version: 1, Command: proxyproto.Local, Transport: proxyproto.TCP4, Source: src4, Destination: dst4},
			"PROXY UNKNOWN\r\n"},
		{"v2-tcp4", proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.TCP4, Source: src4, Destination: dst4},
			v2(0x21, 0x11, ip4Block)},
		{"v2-tcp6", proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.TCP6, Source: src6, Destination: dst6,
			TLVs: []proxyproto.TLV{{Type: proxyproto.TypeALPN, Value: []byte("h2")}}},
			v2(0x21, 0x21, ip6Block+tlv(0x01, "h2"))},
		{"v2-local", proxyproto.Header{Version: 2, Command: proxyproto.Local, Transport: proxyproto.TCP4, Source: src4}, v2(0x20, 0x00, "")},
		{"v2-unix", proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.UnixStream,
			UnixSource: "@abstract", UnixDestination: "/run/s.sock"}, v2(0x21, 0x31, unixBlock("\x00abstract", "/run/s.sock"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.h.Format()
			require.NoError(t, err)
			assert.Equal(t, tc.want, string(b))
			var buf bytes.Buffer
			n, err := tc.h.WriteTo(&buf)
			require.NoError(t, err)
			assert.Equal(t, int64(len(tc.want)), n)
			assert.Equal(t, tc.want, buf.String())
		})
	}
}

func TestHeaderFor(t *testing.T) {
	c4, s4 := tcpPair(t, "tcp4")
	h := proxyproto.HeaderFor(s4, proxyproto.V2)
	assert.Equal(t, proxyproto.TCP4, h.Transport)
	assert.Equal(t, proxyproto.Proxy, h.Command)
	assert.Equal(t, c4.LocalAddr().(*net.TCPAddr).AddrPort(), h.Source)
	assert.Equal(t, s4.LocalAddr().(*net.TCPAddr).AddrPort(), h.Destination)
	assert.True(t, h.Source.Addr().Is4())

	c6, s6 := tcpPair(t, "tcp6")
	h = proxyproto.HeaderFor(s6, proxyproto.V1)
	assert.Equal(t, proxyproto.TCP6, h.Transport)
	assert.Equal(t, c6.LocalAddr().(*net.TCPAddr).AddrPort(), h.Source)
	b, err := h.Format()
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), "PROXY TCP6 ::1 ::1 "), "%q", b)

	// IPv4 on a dual-stack socket arrives IPv4-mapped: still TCP4.
	ln, err := net.Listen("tcp", "[::]:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strings.TrimPrefix(ln.Addr().String(), "[::]:")))
	require.NoError(t, err)
	defer c.Close()
	s, err := ln.Accept()
	require.NoError(t, err)
	defer s.Close()
	h = proxyproto.HeaderFor(s, proxyproto.V2)
	assert.Equal(t, proxyproto.TCP4, h.Transport)
	assert.Equal(t, c.LocalAddr().(*net.TCPAddr).AddrPort(), h.Source)

	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	h = proxyproto.HeaderFor(p1, proxyproto.V2)
	assert.Equal(t, proxyproto.Unspec, h.Transport, "a pipe has no addresses to tell")
}
