package opaque

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

var portKinds = []error{ErrPortZero, ErrPortTooLarge, ErrReversedRange, errEmptyItem, errJunk, errSign, errOverflow, ErrUnknownName}

// FuzzParsePortSet: no panics; a parsed set prints canonically and parses
// back to itself; an error is a *PortListError of exactly one kind whose item
// is found at its offset.
func FuzzParsePortSet(f *testing.F) {
	for _, s := range []string{
		"", "25,587,3306,4444,5432,6379,9300,11211", "4567-4568", " 80 , 443 ", "1-65535",
		"0", "65536", "90-80", "80,,81", "80;81", "-80", "+80", "99999999999999999999", "mysql", "80 - 90",
	} {
		f.Add(s)
	}
	lookup := func(name string) (uint16, bool) {
		if name == "mysql" {
			return 3306, true
		}
		return 0, false
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, lk := range []PortLookup{nil, lookup} {
			p, err := ParsePortSetFunc(s, lk)
			if err != nil {
				var pe *PortListError
				if !errors.As(err, &pe) {
					t.Fatalf("%q: error %v is not a *PortListError", s, err)
				}
				kinds := 0
				for _, k := range portKinds {
					if errors.Is(err, k) {
						kinds++
					}
				}
				if kinds != 1 {
					t.Fatalf("%q: error %v matches %d kinds", s, err, kinds)
				}
				if pe.Offset < 0 || pe.Offset+len(pe.Item) > len(s) || s[pe.Offset:pe.Offset+len(pe.Item)] != pe.Item {
					t.Fatalf("%q: item %q not at offset %d", s, pe.Item, pe.Offset)
				}
				if pe.Index < 1 || pe.Index > strings.Count(s, ",")+1 {
					t.Fatalf("%q: index %d out of range", s, pe.Index)
				}
				if !p.IsEmpty() {
					t.Fatalf("%q: non-empty set with an error", s)
				}
				continue
			}
			canon := p.String()
			q, err := ParsePortSet(canon)
			if err != nil {
				t.Fatalf("%q: canonical form %q does not parse: %v", s, canon, err)
			}
			if !q.Equal(p) || q.String() != canon {
				t.Fatalf("%q: Parse(String()) is not the identity (%q -> %q)", s, canon, q.String())
			}
			if p.Contains(0) {
				t.Fatalf("%q: contains port 0", s)
			}
			n := 0
			for lo, hi := range p.Ranges() {
				if lo > hi || !p.Contains(lo) || !p.Contains(hi) {
					t.Fatalf("%q: bad range %d-%d", s, lo, hi)
				}
				n += int(hi) - int(lo) + 1
			}
			if n != p.Len() {
				t.Fatalf("%q: ranges cover %d ports, Len is %d", s, n, p.Len())
			}
		}
	})
}

// FuzzLayerFromAnnotations: no panics; every error is an *AnnotationError
// for one of the four keys; a key without an error sets its field; the
// resulting layer compiles.
func FuzzLayerFromAnnotations(f *testing.F) {
	f.Add("3306,5432", "22", "25-26", "true")
	f.Add("", "", "", "false")
	f.Add("0", "x", "90-80", "yes")
	f.Add("mysql, 80", " 4190 - 4191 ", ",", "TRUE")
	f.Fuzz(func(t *testing.T, opaque, skipIn, skipOut, external string) {
		ann := map[string]string{
			AnnotationOpaquePorts:            opaque,
			AnnotationSkipInboundPorts:       skipIn,
			AnnotationSkipOutboundPorts:      skipOut,
			AnnotationEnableExternalProfiles: external,
		}
		lookup := func(name string) (uint16, bool) { return uint16(len(name)), len(name) > 3 }
		l, err := LayerFromAnnotations(ann, lookup)
		bad := map[string]bool{}
		if err != nil {
			joined, ok := err.(interface{ Unwrap() []error })
			if !ok {
				t.Fatalf("error %v is not joined", err)
			}
			for _, e := range joined.Unwrap() {
				var ae *AnnotationError
				if !errors.As(e, &ae) || !errors.Is(e, ErrInvalidAnnotation) {
					t.Fatalf("error %v is not an *AnnotationError", e)
				}
				if _, ok := ann[ae.Key]; !ok || ae.Value != ann[ae.Key] || bad[ae.Key] {
					t.Fatalf("error for key %q value %q is wrong or repeated", ae.Key, ae.Value)
				}
				bad[ae.Key] = true
			}
		}
		for key, field := range map[string]*PortSet{
			AnnotationOpaquePorts:       l.OpaquePorts,
			AnnotationSkipInboundPorts:  l.SkipInboundPorts,
			AnnotationSkipOutboundPorts: l.SkipOutboundPorts,
		} {
			if bad[key] != (field == nil) {
				t.Fatalf("key %q: bad=%v but field set=%v", key, bad[key], field != nil)
			}
			if field != nil {
				want, err := ParsePortSetFunc(ann[key], lookup)
				if err != nil || !want.Equal(*field) {
					t.Fatalf("key %q: field %q, parse %q (%v)", key, field.String(), want.String(), err)
				}
			}
		}
		if bad[AnnotationEnableExternalProfiles] != (l.EnableExternalProfiles == nil) {
			t.Fatalf("external profiles: bad=%v but set=%v", bad[AnnotationEnableExternalProfiles], l.EnableExternalProfiles != nil)
		}
		tb, err := Compile(Policy{Workload: l})
		if err != nil {
			t.Fatalf("a parsed layer does not compile: %v", err)
		}
		if l.SkipInboundPorts != nil {
			for p := range l.SkipInboundPorts.All() {
				if tb.Resolve(Inbound, p).Action != ActionSkip {
					t.Fatalf("inbound %d should be skipped", p)
				}
				break
			}
		}
	})
}

// FuzzReadHeader: no panics; a header that reads consumed exactly n bytes,
// re-encodes to a header that reads back equal, and UnmarshalBinary of the
// consumed bytes agrees; errors are *HeaderError values with a known reason.
func FuzzReadHeader(f *testing.F) {
	for _, h := range []Header{
		{Port: 3306},
		{Port: 80, Name: "web.default.svc.cluster.local", SessionProtocol: SessionHTTP1},
		{Port: 65535, Name: "a", SessionProtocol: SessionHTTP2},
	} {
		b, _ := h.MarshalBinary()
		f.Add(b)
		f.Add(append(b, "trailing application bytes"...))
	}
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte(headerPreface + "\x00\x00\x00\x00"))
	f.Add([]byte(headerPreface + "\xff\xff\xff\xff"))
	f.Add([]byte(headerPreface + "\x00\x00\x00\x02\x08\x00"))
	f.Add(encodeRaw([]byte{0x08, 0x50, 0x1a, 0x04, 0x0a, 0x00, 0x12, 0x00}))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		var c HeaderCodec
		h, n, err := c.Read(r)
		if err != nil {
			var he *HeaderError
			if !errors.As(err, &he) || he.Reason < RejectNoPreface || he.Reason > RejectIO {
				t.Fatalf("error %v is not a *HeaderError with a known reason", err)
			}
			if he.Reason == RejectTimeout || he.Reason == RejectCanceled || he.Reason == RejectIO {
				t.Fatalf("reason %v from a bytes.Reader", he.Reason)
			}
			if he.Reason != RejectNoPreface && n > fixedLen && he.Reason == RejectTooLong {
				t.Fatalf("read %d bytes before rejecting the length", n)
			}
			return
		}
		if n != len(data)-r.Len() {
			t.Fatalf("reported %d bytes, consumed %d", n, len(data)-r.Len())
		}
		if h.Port == 0 || (h.Name != "" && !isDNSName(h.Name)) || h.SessionProtocol > SessionHTTP2 {
			t.Fatalf("invalid header accepted: %+v", h)
		}
		var u Header
		if err := u.UnmarshalBinary(data[:n]); err != nil || u != h {
			t.Fatalf("UnmarshalBinary disagrees: %+v %v vs %+v", u, err, h)
		}
		enc, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", h, err)
		}
		back, err := ReadHeader(bytes.NewReader(enc))
		if err != nil || back != h {
			t.Fatalf("round trip of %+v: %+v, %v", h, back, err)
		}
	})
}
