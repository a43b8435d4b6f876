package proxyproto

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strconv"
)

// Format returns the header's bytes as they go on the wire: a version 1
// line or a version 2 binary header, as h.Version says.
//
// Version 1 carries TCP4, TCP6 or, for Unspec (and for a Local command,
// which version 1 lacks), "PROXY UNKNOWN"; it has no TLVs. Version 2
// carries every transport and h.TLVs in order; a TLV of type TypeCRC32C
// is filled with the header's checksum. A Local header carries no
// addresses and no TLVs. The error (ErrInvalid) says what does not fit.
func (h *Header) Format() ([]byte, error) { return h.AppendFormat(nil) }

// AppendFormat appends the header's bytes (see Format) to b.
func (h *Header) AppendFormat(b []byte) ([]byte, error) {
	switch h.Version {
	case V1:
		return h.appendV1(b)
	case V2:
		return h.appendV2(b)
	}
	return b, invalid("version " + strconv.Itoa(int(h.Version)))
}

// WriteTo writes the header to w in one Write, as the protocol asks.
func (h *Header) WriteTo(w io.Writer) (int64, error) {
	b, err := h.Format()
	if err != nil {
		return 0, err
	}
	n, err := w.Write(b)
	return int64(n), err
}

func (h *Header) appendV1(b []byte) ([]byte, error) {
	if len(h.TLVs) > 0 {
		return b, invalid("v1 carries no TLVs")
	}
	if h.Command == Local || h.Transport == Unspec {
		return append(b, "PROXY UNKNOWN\r\n"...), nil
	}
	if h.Command != Proxy {
		return b, invalid("command " + h.Command.String())
	}
	var src, dst netip.Addr
	switch h.Transport {
	case TCP4:
		src, dst = h.Source.Addr().Unmap(), h.Destination.Addr().Unmap()
		if !src.Is4() || !dst.Is4() {
			return b, invalid("TCP4 header with addresses " + h.Source.Addr().String() + " and " + h.Destination.Addr().String())
		}
		b = append(b, "PROXY TCP4 "...)
	case TCP6:
		src, dst = as6(h.Source.Addr()), as6(h.Destination.Addr())
		if !src.IsValid() || !dst.IsValid() {
			return b, invalid("TCP6 header without addresses")
		}
		b = append(b, "PROXY TCP6 "...)
	default:
		return b, invalid("v1 cannot carry " + h.Transport.String())
	}
	b = src.AppendTo(b)
	b = append(b, ' ')
	b = dst.AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(h.Source.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(h.Destination.Port()), 10)
	return append(b, '\r', '\n'), nil
}

// as6 returns a as an IPv6 address without zone (IPv4 mapped), or the
// zero Addr when a is not valid.
func as6(a netip.Addr) netip.Addr {
	if !a.IsValid() {
		return a
	}
	return netip.AddrFrom16(a.As16())
}

func (h *Header) appendV2(b []byte) ([]byte, error) {
	start := len(b)
	b = append(b, v2Sig...)
	switch h.Command {
	case Local:
		if len(h.TLVs) > 0 {
			return b[:start], invalid("a LOCAL header carries no TLVs")
		}
		return append(b, 0x20, byte(Unspec), 0, 0), nil
	case Proxy:
	default:
		return b[:start], invalid("command " + h.Command.String())
	}
	t := h.Transport
	if !t.valid() {
		return b[:start], invalid("transport " + t.String())
	}
	b = append(b, 0x21, byte(t), 0, 0)
	switch t >> 4 {
	case 1:
		src, dst := h.Source.Addr().Unmap(), h.Destination.Addr().Unmap()
		if !src.Is4() || !dst.Is4() {
			return b[:start], invalid(t.String() + " header with addresses " + h.Source.Addr().String() + " and " + h.Destination.Addr().String())
		}
		s4, d4 := src.As4(), dst.As4()
		b = append(b, s4[:]...)
		b = append(b, d4[:]...)
		b = binary.BigEndian.AppendUint16(b, h.Source.Port())
		b = binary.BigEndian.AppendUint16(b, h.Destination.Port())
	case 2:
		if !h.Source.Addr().IsValid() || !h.Destination.Addr().IsValid() {
			return b[:start], invalid(t.String() + " header without addresses")
		}
		s16, d16 := h.Source.Addr().As16(), h.Destination.Addr().As16()
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
		b = binary.BigEndian.AppendUint16(b, h.Source.Port())
		b = binary.BigEndian.AppendUint16(b, h.Destination.Port())
	case 3:
		var err error
		if b, err = appendUnixPath(b, h.UnixSource); err != nil {
			return b[:start], err
		}
		if b, err = appendUnixPath(b, h.UnixDestination); err != nil {
			return b[:start], err
		}
	}
	crcAt := -1
	for _, v := range h.TLVs {
		val := v.Value
		switch v.Type {
		case TypeCRC32C:
			if crcAt >= 0 {
				return b[:start], invalid("two CRC32C TLVs")
			}
			crcAt = len(b) + 3 - start
			val = []byte{0, 0, 0, 0}
		case TypeUniqueID:
			if len(val) > maxUniqueID {
				return b[:start], invalid("unique ID of " + strconv.Itoa(len(val)) + " bytes, over 128")
			}
		}
		if len(val) > 0xffff {
			return b[:start], invalid("TLV of " + strconv.Itoa(len(val)) + " bytes")
		}
		b = append(b, byte(v.Type), byte(len(val)>>8), byte(len(val)))
		b = append(b, val...)
	}
	n := len(b) - start - v2FixedLen
	if n > 0xffff {
		return b[:start], invalid("v2 block of " + strconv.Itoa(n) + " bytes, over 65535")
	}
	binary.BigEndian.PutUint16(b[start+14:], uint16(n))
	if crcAt >= 0 {
		hdr := b[start:]
		binary.BigEndian.PutUint32(hdr[crcAt:], crcWithHole(hdr, crcAt))
	}
	return b, nil
}

// appendUnixPath appends a 108-byte sun_path: the path NUL-padded, or for
// "@name" an abstract socket (a NUL, then the name).
func appendUnixPath(b []byte, p string) ([]byte, error) {
	raw := p
	if len(p) > 0 && p[0] == '@' {
		raw = "\x00" + p[1:]
	}
	if len(raw) > unixPathLen {
		return b, invalid("unix path of " + strconv.Itoa(len(raw)) + " bytes, over 108")
	}
	b = append(b, raw...)
	var zero [unixPathLen]byte
	return append(b, zero[:unixPathLen-len(raw)]...), nil
}

// HeaderFor returns the header that tells the next hop about the client
// connection c: command Proxy, the client's address (c.RemoteAddr) as
// Source and the address it reached (c.LocalAddr) as Destination, TCP4
// when both are IPv4 and TCP6 otherwise (UDP for a *net.UDPConn, Unix
// paths for a *net.UnixConn). Addresses of any other kind give Unspec.
// Add TLVs to the result before writing it.
func HeaderFor(c net.Conn, v Version) *Header {
	h := &Header{Version: v, Command: Proxy}
	switch src := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		if dst, ok := c.LocalAddr().(*net.TCPAddr); ok {
			h.Transport = TCP4
			h.Source, h.Destination = ipPair(src.AddrPort(), dst.AddrPort(), &h.Transport)
		}
	case *net.UDPAddr:
		if dst, ok := c.LocalAddr().(*net.UDPAddr); ok {
			h.Transport = UDP4
			h.Source, h.Destination = ipPair(src.AddrPort(), dst.AddrPort(), &h.Transport)
		}
	case *net.UnixAddr:
		if dst, ok := c.LocalAddr().(*net.UnixAddr); ok {
			h.Transport = UnixStream
			if src.Net == "unixgram" {
				h.Transport = UnixDgram
			}
			h.UnixSource, h.UnixDestination = src.Name, dst.Name
		}
	}
	return h
}

// ipPair unmaps both addresses when both are IPv4; otherwise it makes the
// transport the IPv6 one and both addresses IPv6, without zones.
func ipPair(src, dst netip.AddrPort, t *Transport) (netip.AddrPort, netip.AddrPort) {
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if s.Is4() && d.Is4() {
		return netip.AddrPortFrom(s, src.Port()), netip.AddrPortFrom(d, dst.Port())
	}
	*t += 0x10 // TCP4 -> TCP6, UDP4 -> UDP6
	return netip.AddrPortFrom(as6(s), src.Port()), netip.AddrPortFrom(as6(d), dst.Port())
}
