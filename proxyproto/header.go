package proxyproto

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Version is the PROXY protocol version of a header.
type Version uint8

// Versions of the PROXY protocol.
const (
	V1 Version = 1 // the text line: "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n"
	V2 Version = 2 // the binary header with its 12-byte signature and TLVs
)

// Command says what a header describes.
type Command uint8

// Commands of a header. A version 1 header is always Proxy.
const (
	// Local: the proxy opened the connection on its own behalf (a health
	// check); the connection's own addresses are the real ones and the
	// header carries none.
	Local Command = 0
	// Proxy: the connection is relayed for a client; the header carries the
	// client's addresses (unless its Transport is Unspec).
	Proxy Command = 1
)

// String returns "LOCAL" or "PROXY".
func (c Command) String() string {
	switch c {
	case Local:
		return "LOCAL"
	case Proxy:
		return "PROXY"
	}
	return "Command(" + strconv.Itoa(int(c)) + ")"
}

// Transport is the address family and transport protocol of the relayed
// connection: the 14th byte of a version 2 header (family in the high
// nibble, protocol in the low one), and TCP4, TCP6 or UNKNOWN (Unspec) in a
// version 1 line.
type Transport uint8

// The transports a header may name.
const (
	Unspec     Transport = 0x00 // unknown or unsupported: the header carries no addresses
	TCP4       Transport = 0x11 // TCP over IPv4
	UDP4       Transport = 0x12 // UDP over IPv4
	TCP6       Transport = 0x21 // TCP over IPv6
	UDP6       Transport = 0x22 // UDP over IPv6
	UnixStream Transport = 0x31 // a stream over AF_UNIX
	UnixDgram  Transport = 0x32 // datagrams over AF_UNIX
)

var transportNames = map[Transport]string{
	Unspec: "UNSPEC", TCP4: "TCP4", UDP4: "UDP4", TCP6: "TCP6", UDP6: "UDP6",
	UnixStream: "UNIX_STREAM", UnixDgram: "UNIX_DGRAM",
}

// String returns the transport's name, e.g. "TCP4" or "UNIX_STREAM".
func (t Transport) String() string {
	if s, ok := transportNames[t]; ok {
		return s
	}
	return "Transport(0x" + strconv.FormatUint(uint64(t), 16) + ")"
}

func (t Transport) valid() bool { _, ok := transportNames[t]; return ok }

// IsIP reports whether the transport carries IP addresses and ports.
func (t Transport) IsIP() bool { return t == TCP4 || t == UDP4 || t == TCP6 || t == UDP6 }

// IsUnix reports whether the transport carries AF_UNIX paths.
func (t Transport) IsUnix() bool { return t == UnixStream || t == UnixDgram }

// addrLen is the length of a v2 address block of transport t.
func (t Transport) addrLen() int {
	switch t >> 4 {
	case 1:
		return 12
	case 2:
		return 36
	case 3:
		return 216
	}
	return 0
}

// Header is a PROXY protocol header: what a load balancer tells the server
// behind it about the client's connection.
//
// A Header returned by Parse or Reader.ReadHeader owns its memory: its TLV
// values stay valid after the bytes it was parsed from are reused.
type Header struct {
	Version   Version
	Command   Command
	Transport Transport

	// Source and Destination are the client's address and the address it
	// connected to, for an IP transport (TCP4, UDP4, TCP6, UDP6); IPv4 as
	// 4-byte addresses. Zero otherwise.
	Source, Destination netip.AddrPort

	// UnixSource and UnixDestination are the socket paths of a Unix
	// transport ("@name" for an abstract socket). Empty otherwise.
	UnixSource, UnixDestination string

	// TLVs are a version 2 header's type-length-value fields in the order
	// they were sent (or are to be written), unknown types included. A
	// PP2_TYPE_CRC32C field was verified by Parse; to write one, include a
	// TLV of type TypeCRC32C (any value): the writer computes it.
	TLVs []TLV
}

// Proxied reports whether the header carries the client's addresses: a
// Proxy command with a transport other than Unspec. When it reports false
// (a LOCAL health check, an UNKNOWN line), the connection's own addresses
// are the ones to use.
func (h *Header) Proxied() bool { return h.Command == Proxy && h.Transport != Unspec }

// SourceAddr returns the client's address as a *net.TCPAddr, *net.UDPAddr
// or *net.UnixAddr, or nil when the header carries none (Proxied is false).
func (h *Header) SourceAddr() net.Addr { return h.addr(h.Source, h.UnixSource) }

// DestinationAddr returns the address the client connected to as a
// *net.TCPAddr, *net.UDPAddr or *net.UnixAddr, or nil when the header
// carries none (Proxied is false).
func (h *Header) DestinationAddr() net.Addr { return h.addr(h.Destination, h.UnixDestination) }

func (h *Header) addr(ap netip.AddrPort, path string) net.Addr {
	if !h.Proxied() {
		return nil
	}
	switch h.Transport {
	case TCP4, TCP6:
		return net.TCPAddrFromAddrPort(ap)
	case UDP4, UDP6:
		return net.UDPAddrFromAddrPort(ap)
	case UnixStream:
		return &net.UnixAddr{Net: "unix", Name: path}
	case UnixDgram:
		return &net.UnixAddr{Net: "unixgram", Name: path}
	}
	return nil
}

// TLV returns the value of the first TLV of type t, and whether there is
// one.
func (h *Header) TLV(t TLVType) ([]byte, bool) {
	for _, v := range h.TLVs {
		if v.Type == t {
			return v.Value, true
		}
	}
	return nil, false
}

// ALPN returns the application protocol of the client's connection
// (PP2_TYPE_ALPN, e.g. "h2"), or "".
func (h *Header) ALPN() string { v, _ := h.TLV(TypeALPN); return string(v) }

// Authority returns the host name the client asked for (PP2_TYPE_AUTHORITY:
// the TLS SNI when the proxy terminated TLS), or "".
func (h *Header) Authority() string { v, _ := h.TLV(TypeAuthority); return string(v) }

// UniqueID returns the connection's unique ID given by the proxy
// (PP2_TYPE_UNIQUE_ID, at most 128 bytes), or nil.
func (h *Header) UniqueID() []byte { v, _ := h.TLV(TypeUniqueID); return v }

// NetNS returns the name of the network namespace the proxy accepted the
// client's connection in (PP2_TYPE_NETNS), or "".
func (h *Header) NetNS() string { v, _ := h.TLV(TypeNetNS); return string(v) }

// SSL returns what the proxy learnt from the client's TLS connection
// (PP2_TYPE_SSL and its sub-TLVs), and whether the header has it.
func (h *Header) SSL() (SSL, bool) {
	v, ok := h.TLV(TypeSSL)
	if !ok {
		return SSL{}, false
	}
	s, err := parseSSL(v)
	return s, err == nil
}

// String returns a one-line description, e.g.
// "PROXY v2 TCP4 192.0.2.1:56324 -> 198.51.100.1:443 (3 TLVs)".
func (h *Header) String() string {
	var b strings.Builder
	b.WriteString(h.Command.String())
	b.WriteString(" v")
	b.WriteString(strconv.Itoa(int(h.Version)))
	b.WriteString(" ")
	b.WriteString(h.Transport.String())
	switch {
	case h.Transport.IsIP():
		b.WriteString(" " + h.Source.String() + " -> " + h.Destination.String())
	case h.Transport.IsUnix():
		b.WriteString(" " + strconv.Quote(h.UnixSource) + " -> " + strconv.Quote(h.UnixDestination))
	}
	if len(h.TLVs) > 0 {
		b.WriteString(" (" + strconv.Itoa(len(h.TLVs)) + " TLVs)")
	}
	return b.String()
}

// TLVType is the type of a version 2 TLV.
type TLVType uint8

// Registered TLV types (PP2_TYPE_*) and the sub-types inside PP2_TYPE_SSL
// (PP2_SUBTYPE_SSL_*). 0xE0-0xEF are for applications (AWS, Azure and GCP
// load balancers put their endpoint IDs there), 0xF0-0xF7 experimental.
const (
	TypeALPN      TLVType = 0x01 // the application protocol (ALPN) of the client's connection
	TypeAuthority TLVType = 0x02 // the host name the client asked for (TLS SNI)
	TypeCRC32C    TLVType = 0x03 // CRC32C of the whole header
	TypeNoop      TLVType = 0x04 // padding, ignored
	TypeUniqueID  TLVType = 0x05 // an ID of the connection, at most 128 bytes
	TypeSSL       TLVType = 0x20 // the client's TLS connection, see [SSL]
	TypeNetNS     TLVType = 0x30 // the network namespace's name

	SubtypeSSLVersion TLVType = 0x21 // TLS version, e.g. "TLSv1.3"
	SubtypeSSLCN      TLVType = 0x22 // Common Name of the client certificate's subject
	SubtypeSSLCipher  TLVType = 0x23 // cipher, e.g. "TLS_AES_128_GCM_SHA256"
	SubtypeSSLSigAlg  TLVType = 0x24 // signature algorithm of the proxy's certificate, e.g. "SHA256"
	SubtypeSSLKeyAlg  TLVType = 0x25 // key algorithm of the proxy's certificate, e.g. "RSA2048"

	SubtypeSSLGroup      TLVType = 0x26 // key exchange group, e.g. "X25519" (newer senders)
	SubtypeSSLSigScheme  TLVType = 0x27 // signature scheme of the handshake, e.g. "ecdsa_secp256r1_sha256" (newer senders)
	SubtypeSSLClientCert TLVType = 0x28 // the client's certificate, DER (newer senders)
)

// TLV is one type-length-value field of a version 2 header.
type TLV struct {
	Type  TLVType
	Value []byte
}

// Bits of SSL.Client (PP2_CLIENT_*).
const (
	ClientSSL      = 0x01 // the client connected over TLS
	ClientCertConn = 0x02 // the client presented a certificate on this connection
	ClientCertSess = 0x04 // the client presented a certificate in this TLS session
)

// SSL is the value of a PP2_TYPE_SSL TLV: what the proxy learnt from the
// client's TLS connection.
type SSL struct {
	// Client is a set of the ClientSSL, ClientCertConn and ClientCertSess
	// bits.
	Client uint8
	// Verify is 0 when the client presented a certificate and it was
	// verified, non-zero otherwise.
	Verify uint32
	// TLVs are the sub-TLVs (SubtypeSSL*, and any others) in order.
	TLVs []TLV
}

func (s SSL) sub(t TLVType) string {
	for _, v := range s.TLVs {
		if v.Type == t {
			return string(v.Value)
		}
	}
	return ""
}

// Version returns the TLS version (PP2_SUBTYPE_SSL_VERSION), e.g. "TLSv1.3".
func (s SSL) Version() string { return s.sub(SubtypeSSLVersion) }

// CN returns the Common Name of the client certificate's subject
// (PP2_SUBTYPE_SSL_CN).
func (s SSL) CN() string { return s.sub(SubtypeSSLCN) }

// Cipher returns the cipher's name (PP2_SUBTYPE_SSL_CIPHER).
func (s SSL) Cipher() string { return s.sub(SubtypeSSLCipher) }

// SigAlg returns the signature algorithm of the proxy's own certificate
// (PP2_SUBTYPE_SSL_SIG_ALG).
func (s SSL) SigAlg() string { return s.sub(SubtypeSSLSigAlg) }

// KeyAlg returns the key algorithm of the proxy's own certificate
// (PP2_SUBTYPE_SSL_KEY_ALG).
func (s SSL) KeyAlg() string { return s.sub(SubtypeSSLKeyAlg) }

// Group returns the key exchange group (PP2_SUBTYPE_SSL_GROUP), when the
// sender sends it.
func (s SSL) Group() string { return s.sub(SubtypeSSLGroup) }

// SigScheme returns the signature scheme of the handshake
// (PP2_SUBTYPE_SSL_SIG_SCHEME), when the sender sends it.
func (s SSL) SigScheme() string { return s.sub(SubtypeSSLSigScheme) }

// ClientCert returns the client's certificate in DER
// (PP2_SUBTYPE_SSL_CLIENT_CERT), when the sender sends it, else nil.
func (s SSL) ClientCert() []byte {
	for _, v := range s.TLVs {
		if v.Type == SubtypeSSLClientCert {
			return v.Value
		}
	}
	return nil
}

// ClientCertVerified reports whether the client presented a certificate
// (on this connection or in its session) and the proxy verified it.
func (s SSL) ClientCertVerified() bool {
	return s.Client&(ClientCertConn|ClientCertSess) != 0 && s.Verify == 0
}

// TLV encodes s as a PP2_TYPE_SSL TLV, for a header to write.
func (s SSL) TLV() TLV {
	n := 5
	for _, t := range s.TLVs {
		n += 3 + len(t.Value)
	}
	b := make([]byte, 5, n)
	b[0] = s.Client
	b[1], b[2], b[3], b[4] = byte(s.Verify>>24), byte(s.Verify>>16), byte(s.Verify>>8), byte(s.Verify)
	for _, t := range s.TLVs {
		b = append(b, byte(t.Type), byte(len(t.Value)>>8), byte(len(t.Value)))
		b = append(b, t.Value...)
	}
	return TLV{Type: TypeSSL, Value: b}
}

// parseSSL decodes the value of a PP2_TYPE_SSL TLV. The sub-TLV values
// alias v.
func parseSSL(v []byte) (SSL, error) {
	if len(v) < 5 {
		return SSL{}, invalid("SSL TLV shorter than 5 bytes")
	}
	s := SSL{Client: v[0], Verify: uint32(v[1])<<24 | uint32(v[2])<<16 | uint32(v[3])<<8 | uint32(v[4])}
	tlvs, err := parseTLVs(v[5:], "SSL sub-TLV")
	if err != nil {
		return SSL{}, err
	}
	s.TLVs = tlvs
	return s, nil
}

// parseTLVs splits b into TLVs whose values alias b.
func parseTLVs(b []byte, what string) ([]TLV, error) {
	n := 0
	for p := b; len(p) > 0; n++ {
		if len(p) < 3 {
			return nil, invalid(what + " cut in its type or length")
		}
		l := int(p[1])<<8 | int(p[2])
		if len(p) < 3+l {
			return nil, invalid(what + " longer than the header")
		}
		p = p[3+l:]
	}
	if n == 0 {
		return nil, nil
	}
	out := make([]TLV, 0, n)
	for len(b) > 0 {
		l := int(b[1])<<8 | int(b[2])
		out = append(out, TLV{Type: TLVType(b[0]), Value: b[3 : 3+l : 3+l]})
		b = b[3+l:]
	}
	return out, nil
}
