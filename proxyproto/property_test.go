package proxyproto_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/proxyproto"
)

// randomHeader returns a header the writer accepts, of any version,
// command and transport, with random TLVs (the registered kinds, SSL with
// sub-TLVs, unknown types and, sometimes, a CRC32C).
func randomHeader(r *rand.Rand) proxyproto.Header {
	bs := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return b
	}
	text := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + r.IntN(26))
		}
		return b
	}
	ap4 := func() netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(bs(4))), uint16(r.IntN(65536)))
	}
	ap6 := func() netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(bs(16))), uint16(r.IntN(65536)))
	}
	path := func() string {
		if r.IntN(3) == 0 {
			return "@" + string(text(1+r.IntN(106)))
		}
		return "/" + string(text(r.IntN(107)))
	}
	h := proxyproto.Header{Version: proxyproto.V1, Command: proxyproto.Proxy}
	if r.IntN(3) > 0 {
		h.Version = proxyproto.V2
	}
	if h.Version == proxyproto.V1 {
		switch r.IntN(3) {
		case 0:
			h.Transport, h.Source, h.Destination = proxyproto.TCP4, ap4(), ap4()
		case 1:
			h.Transport, h.Source, h.Destination = proxyproto.TCP6, ap6(), ap6()
		}
		return h
	}
	if r.IntN(8) == 0 {
		h.Command = proxyproto.Local
		return h
	}
	ts := []proxyproto.Transport{proxyproto.Unspec, proxyproto.TCP4, proxyproto.UDP4, proxyproto.TCP6, proxyproto.UDP6,
		proxyproto.UnixStream, proxyproto.UnixDgram}
	h.Transport = ts[r.IntN(len(ts))]
	switch {
	case h.Transport == proxyproto.TCP4 || h.Transport == proxyproto.UDP4:
		h.Source, h.Destination = ap4(), ap4()
	case h.Transport.IsIP():
		h.Source, h.Destination = ap6(), ap6()
	case h.Transport.IsUnix():
		h.UnixSource, h.UnixDestination = path(), path()
	}
	crc := false
	for range r.IntN(6) {
		var v proxyproto.TLV
		switch r.IntN(8) {
		case 0:
			v = proxyproto.TLV{Type: proxyproto.TypeALPN, Value: text(1 + r.IntN(8))}
		case 1:
			v = proxyproto.TLV{Type: proxyproto.TypeAuthority, Value: text(r.IntN(64))}
		case 2:
			v = proxyproto.TLV{Type: proxyproto.TypeUniqueID, Value: bs(r.IntN(129))}
		case 3:
			v = proxyproto.TLV{Type: proxyproto.TypeNoop, Value: bs(r.IntN(8))}
		case 4:
			v = proxyproto.TLV{Type: proxyproto.TypeNetNS, Value: text(r.IntN(16))}
		case 5:
			v = proxyproto.TLV{Type: proxyproto.TLVType(0xe0 + r.IntN(32)), Value: bs(r.IntN(300))}
		case 6:
			s := proxyproto.SSL{Client: uint8(r.IntN(8)), Verify: r.Uint32()}
			for range r.IntN(5) {
				s.TLVs = append(s.TLVs, proxyproto.TLV{Type: proxyproto.TLVType(0x21 + r.IntN(5)), Value: text(r.IntN(32))})
			}
			v = s.TLV()
		case 7:
			if crc {
				continue
			}
			crc = true
			v = proxyproto.TLV{Type: proxyproto.TypeCRC32C, Value: []byte{0, 0, 0, 0}}
		}
		h.TLVs = append(h.TLVs, v)
	}
	return h
}

// expected is what Parse gives back for h as the writer wrote it: the
// CRC32C TLV holds the computed checksum, IPv4 addresses of TCP6/UDP6 are
// IPv4-mapped.
func expected(h proxyproto.Header, wire []byte) proxyproto.Header {
	h.TLVs = append([]proxyproto.TLV(nil), h.TLVs...)
	off := 16 + map[proxyproto.Transport]int{proxyproto.TCP4: 12, proxyproto.UDP4: 12, proxyproto.TCP6: 36, proxyproto.UDP6: 36,
		proxyproto.UnixStream: 216, proxyproto.UnixDgram: 216}[h.Transport]
	for i, v := range h.TLVs {
		if v.Type == proxyproto.TypeCRC32C {
			h.TLVs[i].Value = wire[off+3 : off+7]
		}
		off += 3 + len(v.Value)
	}
	return h
}

// TestRoundTrip: every header the writer writes parses back equal, and
// Parse reports exactly its length.
func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		h := randomHeader(r)
		wire, err := h.Format()
		require.NoError(t, err, "%d: %v", i, &h)
		got, n, err := proxyproto.Parse(append(wire, "after"...))
		require.NoError(t, err, "%d: %v %q", i, &h, wire)
		require.Equal(t, len(wire), n)
		require.Equal(t, expected(h, wire), *got, "%d: %q", i, wire)
	}
}

// TestRoundTripConn: headers from the writer, followed by data, written in
// every two-piece fragmentation (and one byte at a time), are read by
// ReadHeader on TCP (the MSG_PEEK path on Linux) and on a pipe (the read
// path): the header parses back equal and the bytes read after it are
// exactly the data sent.
func TestRoundTripConn(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	headers := 8
	if testing.Short() {
		headers = 3
	}
	for range headers {
		h := randomHeader(r)
		wire, err := h.Format()
		require.NoError(t, err)
		data := bytes.Repeat([]byte{byte(r.IntN(256))}, 1+r.IntN(64))
		data[0] = 'D'
		all := string(wire) + string(data)
		want := expected(h, wire)
		for _, p := range paths {
			var splits [][]string
			step := 1
			if p.name == "tcp" {
				step = max(1, len(all)/24) // each write pauses 2ms: a sample of the splits
			}
			if p.name != "tcp" || len(all) <= 160 {
				splits = append(splits, strings.Split(all, ""))
			}
			for i := 1; i < len(all); i += step {
				splits = append(splits, []string{all[:i], all[i:]})
			}
			for _, parts := range splits {
				c, s := p.pair(t)
				sent := send(c, true, parts...)
				var rd proxyproto.Reader
				conn, got, err := rd.ReadHeader(context.Background(), s)
				require.NoError(t, err, "%s %v: %d parts", p.name, &h, len(parts))
				require.Equal(t, want, *got)
				if p.name == "tcp" && runtime.GOOS == "linux" {
					assert.Same(t, s, conn)
				}
				require.Equal(t, string(data), readAll(t, conn), "%s: the bytes after the header", p.name)
				require.NoError(t, <-sent)
				c.Close()
				s.Close()
			}
		}
	}
}
