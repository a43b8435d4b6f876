package proxyproto_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	gpp "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sniffsplice/sniff/proxyproto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	src4 = netip.MustParseAddrPort("192.0.2.1:1234")
	dst4 = netip.MustParseAddrPort("198.51.100.2:443")
	src6 = netip.MustParseAddrPort("[2001:db8::1]:1234")
	dst6 = netip.MustParseAddrPort("[2001:db8::2]:443")
)

// tlvs is a set of v2 TLVs both libraries know: ALPN, authority, unique
// ID, NOOP, NETNS, an AWS-style custom one and SSL with its sub-TLVs.
func tlvs(t *testing.T) ([]proxyproto.TLV, []gpp.TLV) {
	ssl := proxyproto.SSL{Client: proxyproto.ClientSSL | proxyproto.ClientCertConn, Verify: 0, TLVs: []proxyproto.TLV{
		{Type: proxyproto.SubtypeSSLVersion, Value: []byte("TLSv1.3")},
		{Type: proxyproto.SubtypeSSLCN, Value: []byte("client.test")},
		{Type: proxyproto.SubtypeSSLCipher, Value: []byte("TLS_AES_128_GCM_SHA256")},
		{Type: proxyproto.SubtypeSSLSigAlg, Value: []byte("SHA256")},
		{Type: proxyproto.SubtypeSSLKeyAlg, Value: []byte("EC256")},
	}}
	ours := []proxyproto.TLV{
		{Type: proxyproto.TypeALPN, Value: []byte("h2")},
		{Type: proxyproto.TypeAuthority, Value: []byte("api.example")},
		{Type: proxyproto.TypeUniqueID, Value: []byte("conn-42")},
		{Type: proxyproto.TypeNoop, Value: []byte{0, 0, 0}},
		{Type: proxyproto.TypeNetNS, Value: []byte("blue")},
		{Type: 0xea, Value: []byte("\x01vpce-0123456789")},
		ssl.TLV(),
	}
	theirs := make([]gpp.TLV, len(ours))
	for i, v := range ours {
		theirs[i] = gpp.TLV{Type: gpp.PP2Type(v.Type), Value: v.Value}
	}
	return ours, theirs
}

type headerCase struct {
	name   string
	ours   proxyproto.Header
	theirs *gpp.Header
}

func tcp(ap netip.AddrPort) *net.TCPAddr { return net.TCPAddrFromAddrPort(ap) }
func udp(ap netip.AddrPort) *net.UDPAddr { return net.UDPAddrFromAddrPort(ap) }
func unix(n, p string) *net.UnixAddr     { return &net.UnixAddr{Net: n, Name: p} }
func theirTLVs(h *gpp.Header, v []gpp.TLV) *gpp.Header {
	if err := h.SetTLVs(v); err != nil {
		panic(err)
	}
	return h
}

// cases: the same header in both libraries' terms, for both versions and
// every address family and command. go-proxyproto names a v1 UNKNOWN line
// LOCAL; we name it PROXY with transport UNSPEC (both: use the
// connection's own addresses).
func cases(t *testing.T) []headerCase {
	ourTLVs, theirTLVs0 := tlvs(t)
	P := proxyproto.Proxy
	return []headerCase{
		{"v1-tcp4", proxyproto.Header{Version: 1, Command: P, Transport: proxyproto.TCP4, Source: src4, Destination: dst4},
			&gpp.Header{Version: 1, Command: gpp.PROXY, TransportProtocol: gpp.TCPv4, SourceAddr: tcp(src4), DestinationAddr: tcp(dst4)}},
		{"v1-tcp6", proxyproto.Header{Version: 1, Command: P, Transport: proxyproto.TCP6, Source: src6, Destination: dst6},
			&gpp.Header{Version: 1, Command: gpp.PROXY, TransportProtocol: gpp.TCPv6, SourceAddr: tcp(src6), DestinationAddr: tcp(dst6)}},
		{"v1-unknown", proxyproto.Header{Version: 1, Command: P, Transport: proxyproto.Unspec},
			&gpp.Header{Version: 1, Command: gpp.LOCAL, TransportProtocol: gpp.UNSPEC}},
		{"v2-tcp4", proxyproto.Header{Version: 2, Command: P, Transport: proxyproto.TCP4, Source: src4, Destination: dst4},
			&gpp.Header{Version: 2, Command: gpp.PROXY, TransportProtocol: gpp.TCPv4, SourceAddr: tcp(src4), DestinationAddr: tcp(dst4)}},
		{"v2-udp4", proxyproto.Header{Version: 2, Command: P, Transport: proxyproto.UDP4, Source: src4, Destination: dst4},
			&gpp.Header{Version: 2, Command: gpp.PROXY, TransportProtocol: gpp.UDPv4, SourceAddr: udp(src4), DestinationAddr: udp(dst4)}},
		{"v2-tcp6", proxyproto.Header{Version: 2, Command: P, Transport: proxyproto.TCP6, Source: src6, Destination: dst6},
			&gpp.Header{Version: 2, Command: gpp.PROXY, TransportProtocol: gpp.TCPv6, SourceAddr: tcp(src6), DestinationAddr: tcp(dst6)}},
		{"v2-udp6", proxyproto.Header{Version: 2, Command: P, Transport: proxyproto.UDP6, Source: src6, Destination: dst6},
			&gpp.Header{Version: 2, Command: gpp.PROXY, TransportProtocol: gpp.UDPv6, SourceAddr: udp(src6), DestinationAddr: udp(dst6)}},
		{"v2-unix-stream", proxyproto.Header{Version: 2, Command: P, Transport: proxyproto.UnixStream,
			UnixSource: "/run/client.sock", UnixDestination: "/run/server.sock"},
			&gpp.Header{Version: 2, Command: gpp.PROXY, TransportProtocol: gpp.UnixStream,
				SourceAddr: unix("unix", "/run/client.sock"), DestinationAddr: unix("unix", "/run/server.sock")}},
		{"v2-unix-dgram", proxyproto.Header{Version: 2, Command: P, Transport: proxyproto.UnixDgram,
			UnixSource: "/run/c.sock", UnixDestination: "/run/s.sock"},
			&gpp.Header{Version: 2, Command: gpp.PROXY, TransportProtocol: gpp.UnixDatagram,
				SourceAddr: unix("unixgram", "/run/c.sock"), DestinationAddr: unix("unixgram", "/run/s.sock")}},
		{"v2-unspec", proxyproto.Header{Version: 2, Command: P, Transport: proxyproto.Unspec},
			&gpp.Header{Version: 2, Command: gpp.PROXY, TransportProtocol: gpp.UNSPEC}},
		{"v2-local", proxyproto.Header{Version: 2, Command: proxyproto.Local},
			&gpp.Header{Version: 2, Command: gpp.LOCAL, TransportProtocol: gpp.UNSPEC}},
		{"v2-tcp4-tlvs", proxyproto.Header{Version: 2, Command: P, Transport: proxyproto.TCP4, Source: src4, Destination: dst4, TLVs: ourTLVs},
			theirTLVs(&gpp.Header{Version: 2, Command: gpp.PROXY, TransportProtocol: gpp.TCPv4, SourceAddr: tcp(src4), DestinationAddr: tcp(dst4)}, theirTLVs0)},
		{"v2-tcp6-tlvs", proxyproto.Header{Version: 2, Command: P, Transport: proxyproto.TCP6, Source: src6, Destination: dst6, TLVs: ourTLVs},
			theirTLVs(&gpp.Header{Version: 2, Command: gpp.PROXY, TransportProtocol: gpp.TCPv6, SourceAddr: tcp(src6), DestinationAddr: tcp(dst6)}, theirTLVs0)},
	}
}

// addrOf is an address of either library as "ip:port" or the unix path.
func addrOf(a net.Addr) string {
	switch a := a.(type) {
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
	case *net.UnixAddr:
		return a.Net + ":" + a.Name
	case nil:
		return ""
	}
	return a.String()
}

// sameHeader checks that ours and theirs say the same thing.
func sameHeader(t *testing.T, ours *proxyproto.Header, theirs *gpp.Header) {
	t.Helper()
	require.NotNil(t, ours)
	require.NotNil(t, theirs)
	assert.Equal(t, byte(ours.Version), theirs.Version)
	theirsProxied := theirs.Command.IsProxy() && theirs.TransportProtocol != gpp.UNSPEC
	assert.Equal(t, ours.Proxied(), theirsProxied, "both say whether to use the header's addresses")
	if ours.Proxied() {
		assert.Equal(t, byte(ours.Transport), byte(theirs.TransportProtocol))
		assert.Equal(t, addrOf(theirs.SourceAddr), addrOf(ours.SourceAddr()))
		assert.Equal(t, addrOf(theirs.DestinationAddr), addrOf(ours.DestinationAddr()))
	}
	if ours.Command == proxyproto.Local {
		return // both discard a LOCAL header's block
	}
	their, err := theirs.TLVs()
	require.NoError(t, err)
	require.Len(t, ours.TLVs, len(their))
	for i := range their {
		assert.Equal(t, byte(their[i].Type), byte(ours.TLVs[i].Type))
		if their[i].Type == gpp.PP2_TYPE_NOOP {
			continue // go-proxyproto drops a NOOP's value (padding, "to be ignored")
		}
		assert.True(t, bytes.Equal(their[i].Value, ours.TLVs[i].Value), "TLV %d", i)
	}
	if s, ok := ours.SSL(); ok {
		ts, ok := tlvparse.FindSSL(their)
		require.True(t, ok)
		assert.Equal(t, ts.Client, s.Client)
		assert.Equal(t, ts.Verify, s.Verify)
		v, _ := ts.SSLVersion()
		assert.Equal(t, v, s.Version())
		cn, _ := ts.ClientCN()
		assert.Equal(t, cn, s.CN())
		c, _ := ts.SSLCipher()
		assert.Equal(t, c, s.Cipher())
		sa, _ := ts.SSLSigAlg()
		assert.Equal(t, sa, s.SigAlg())
		ka, _ := ts.SSLKeyAlg()
		assert.Equal(t, ka, s.KeyAlg())
	}
}

// TestTheirWriterOurParser: go-proxyproto's bytes, parsed by Parse and read
// by ReadHeader off a TCP connection (the MSG_PEEK path: the very
// *net.TCPConn comes back with the data after the header intact).
func TestTheirWriterOurParser(t *testing.T) {
	for _, tc := range cases(t) {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.theirs.Format()
			require.NoError(t, err)
			h, n, err := proxyproto.Parse(b)
			require.NoError(t, err, "%q", b)
			assert.Equal(t, len(b), n)
			sameHeader(t, h, tc.theirs)

			c, s := tcpPair(t)
			go func() {
				_, _ = tc.theirs.WriteTo(c)
				_, _ = c.Write([]byte("after the header"))
				_ = c.(*net.TCPConn).CloseWrite()
			}()
			var r proxyproto.Reader
			conn, got, err := r.ReadHeader(context.Background(), s)
			require.NoError(t, err)
			sameHeader(t, got, tc.theirs)
			assert.Same(t, s, conn, "the accepted *net.TCPConn itself")
			rest, err := io.ReadAll(conn)
			require.NoError(t, err)
			assert.Equal(t, "after the header", string(rest))
		})
	}
}

// TestOurWriterTheirParser: our bytes, read by go-proxyproto's Read and by
// its Conn over TCP (RemoteAddr is our source, the data after the header
// intact).
func TestOurWriterTheirParser(t *testing.T) {
	for _, tc := range cases(t) {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.ours.Format()
			require.NoError(t, err)
			theirs, err := gpp.Read(bufio.NewReader(bytes.NewReader(b)))
			if tc.ours.Version == proxyproto.V2 && tc.ours.Command == proxyproto.Proxy && tc.ours.Transport == proxyproto.Unspec {
				// The spec lets a receiver accept or refuse a PROXY
				// command with family UNSPEC; go-proxyproto refuses it
				// (we accept it and use the connection's addresses).
				require.ErrorIs(t, err, gpp.ErrUnsupportedAddressFamilyAndProtocol)
				return
			}
			require.NoError(t, err, "%q", b)
			sameHeader(t, &tc.ours, theirs)

			c, s := tcpPair(t)
			go func() {
				_, _ = tc.ours.WriteTo(c)
				_, _ = c.Write([]byte("after the header"))
				_ = c.(*net.TCPConn).CloseWrite()
			}()
			pc := gpp.NewConn(s, gpp.SetReadHeaderTimeout(10*time.Second))
			rest, err := io.ReadAll(pc)
			require.NoError(t, err)
			assert.Equal(t, "after the header", string(rest))
			sameHeader(t, &tc.ours, pc.ProxyHeader())
			if tc.ours.Proxied() {
				assert.Equal(t, addrOf(tc.ours.SourceAddr()), addrOf(pc.RemoteAddr()))
			}
		})
	}
}

// TestTheirSSLOurs: go-proxyproto's SSL TLV (tlvparse.PP2SSL.Marshal) reads
// back field by field through SSL.
func TestTheirSSLOurs(t *testing.T) {
	ts := tlvparse.PP2SSL{Client: tlvparse.PP2_BITFIELD_CLIENT_SSL | tlvparse.PP2_BITFIELD_CLIENT_CERT_SESS, Verify: 7, TLV: []gpp.TLV{
		{Type: gpp.PP2_SUBTYPE_SSL_VERSION, Value: []byte("TLSv1.2")},
		{Type: gpp.PP2_SUBTYPE_SSL_CN, Value: []byte("cn.example")},
		{Type: gpp.PP2_SUBTYPE_SSL_GROUP, Value: []byte("X25519")},
	}}
	tlv, err := ts.Marshal()
	require.NoError(t, err)
	h := &gpp.Header{Version: 2, Command: gpp.PROXY, TransportProtocol: gpp.TCPv4, SourceAddr: tcp(src4), DestinationAddr: tcp(dst4)}
	require.NoError(t, h.SetTLVs([]gpp.TLV{tlv}))
	b, err := h.Format()
	require.NoError(t, err)
	ours, _, err := proxyproto.Parse(b)
	require.NoError(t, err)
	s, ok := ours.SSL()
	require.True(t, ok)
	assert.Equal(t, ts.Client, s.Client)
	assert.Equal(t, uint32(7), s.Verify)
	assert.False(t, s.ClientCertVerified())
	assert.Equal(t, "TLSv1.2", s.Version())
	assert.Equal(t, "cn.example", s.CN())
	assert.Equal(t, "X25519", s.Group())
}

// TestOurCRC32C: a CRC32C TLV our writer fills is carried through
// go-proxyproto (which does not check it) and checked by us; a corrupt one
// is refused by us.
func TestOurCRC32C(t *testing.T) {
	h := proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.TCP4, Source: src4, Destination: dst4,
		TLVs: []proxyproto.TLV{{Type: proxyproto.TypeAuthority, Value: []byte("a.example")}, {Type: proxyproto.TypeCRC32C}}}
	b, err := h.Format()
	require.NoError(t, err)
	theirs, err := gpp.Read(bufio.NewReader(bytes.NewReader(b)))
	require.NoError(t, err)
	again, err := theirs.Format()
	require.NoError(t, err)
	_, _, err = proxyproto.Parse(again)
	require.NoError(t, err, "their re-encoding keeps our checksum valid")
	again[len(again)-1] ^= 1
	_, _, err = proxyproto.Parse(again)
	require.ErrorIs(t, err, proxyproto.ErrChecksum)
}

func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	r := <-ch
	require.NoError(t, r.err)
	t.Cleanup(func() { c.Close(); r.c.Close() })
	return c, r.c
}
