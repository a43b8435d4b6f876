package opaque_test

// Limits of the opaque package's parsers and decisions: port lists and port
// sets against a reference written here from the documented syntax (a
// 65,536-entry table), the transport header's DNS names, ports, lengths and
// protobuf fields at their limits, and Compile's bounds. scripts/mutate runs
// these (TestLimits*) for each planted bug; see TESTING.md.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/opaque"
)

// refSet is a port set as a table.
type refSet [1 << 16]bool

func (r *refSet) add(lo, hi int) {
	for p := max(lo, 1); p <= hi; p++ {
		r[p] = true
	}
}

func (r *refSet) ranges() [][2]uint16 {
	var out [][2]uint16
	for p := 1; p < 1<<16; p++ {
		if r[p] && !r[p-1] || r[p] && p == 1 {
			lo := p
			for p+1 < 1<<16 && r[p+1] {
				p++
			}
			out = append(out, [2]uint16{uint16(lo), uint16(p)})
		}
	}
	return out
}

func (r *refSet) String() string { return rangesString(r.ranges()) }

func rangesString(rs [][2]uint16) string {
	var parts []string
	for _, rg := range rs {
		if rg[0] == rg[1] {
			parts = append(parts, strconv.Itoa(int(rg[0])))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", rg[0], rg[1]))
		}
	}
	return strings.Join(parts, ",")
}

// checkSet compares every observable of p with want.
func checkSet(t *testing.T, what string, p opaque.PortSet, want *refSet) {
	t.Helper()
	n := 0
	for port := range 1 << 16 {
		if p.Contains(uint16(port)) != want[port] {
			t.Fatalf("%s: Contains(%d) = %v", what, port, !want[port])
		}
	}
	wr := want.ranges()
	for _, r := range wr {
		n += int(r[1]) - int(r[0]) + 1
	}
	if p.Len() != n || p.IsEmpty() != (n == 0) {
		t.Fatalf("%s: Len %d IsEmpty %v, want %d", what, p.Len(), p.IsEmpty(), n)
	}
	var all []uint16
	for port := range p.All() {
		all = append(all, port)
	}
	if len(all) != n || !slices.IsSorted(all) {
		t.Fatalf("%s: All gave %d ports (sorted: %v), want %d", what, len(all), slices.IsSorted(all), n)
	}
	var rs [][2]uint16
	for lo, hi := range p.Ranges() {
		rs = append(rs, [2]uint16{lo, hi})
	}
	if !slices.Equal(rs, wr) {
		t.Fatalf("%s: Ranges %v, want %v", what, rs, wr)
	}
	if s := p.String(); s != rangesString(wr) {
		t.Fatalf("%s: String %q, want %q", what, s, rangesString(wr))
	}
	// Stopping each iterator after every k-th element.
	for k := 1; k <= min(len(rs), 3); k++ {
		i := 0
		for range p.Ranges() {
			if i++; i == k {
				break
			}
		}
		j := 0
		for range p.All() {
			if j++; j == k {
				break
			}
		}
		if i != k || j != k {
			t.Fatalf("%s: iterators ran on after a break", what)
		}
	}
}

// edgePorts are the ports at the edges of the bitmap's 64-port words and of
// the port range.
var edgePorts = []int{1, 2, 62, 63, 64, 65, 126, 127, 128, 129, 191, 192, 4095, 4096, 65471, 65472, 65473, 65534, 65535}

func TestLimitsPortSet(t *testing.T) {
	opaque.Bound(t)
	dl := newDeadline(t)
	var sets []opaque.PortSet
	var refs []*refSet
	add := func(p opaque.PortSet, r *refSet) { sets, refs = append(sets, p), append(refs, r) }
	add(opaque.PortSet{}, new(refSet))
	for _, lo := range append([]int{0}, edgePorts...) {
		for _, hi := range edgePorts {
			dl.check(t)
			if lo > hi {
				if p := opaque.PortRange(uint16(lo), uint16(hi)); !p.IsEmpty() || p.Len() != 0 || !p.Equal(opaque.PortSet{}) {
					t.Fatalf("PortRange(%d, %d) is not empty", lo, hi)
				}
				if _, err := opaque.ParsePortSet(fmt.Sprintf("%d-%d", lo, hi)); !errors.Is(err, opaque.ErrReversedRange) {
					t.Fatalf("%d-%d: %v", lo, hi, err)
				}
				continue
			}
			if opaque.RaceEnabled && (lo+hi)%4 != 0 {
				continue // the race detector slows this tenfold and finds nothing in one goroutine
			}
			r := new(refSet)
			r.add(lo, hi)
			p := opaque.PortRange(uint16(lo), uint16(hi))
			checkSet(t, fmt.Sprintf("PortRange(%d, %d)", lo, hi), p, r)
			q, err := opaque.ParsePortSet(fmt.Sprintf("%d-%d", max(lo, 1), hi))
			if lo <= hi {
				if err != nil {
					t.Fatal(err)
				}
				checkSet(t, fmt.Sprintf("ParsePortSet(%d-%d)", lo, hi), q, r)
				if !q.Equal(p) || !p.Equal(q) {
					t.Fatal("Equal")
				}
				if lo%3 == 0 {
					add(p, r)
				}
			}
		}
	}
	single := new(refSet)
	var ports []uint16
	for _, p := range edgePorts {
		single[p] = true
		ports = append(ports, uint16(p))
	}
	add(opaque.NewPortSet(append(ports, 0)...), single)
	checkSet(t, "NewPortSet(edges)", sets[len(sets)-1], single)
	full := new(refSet)
	full.add(1, 65535)
	add(opaque.PortRange(0, 65535), full)

	// Union, intersection and difference of every pair.
	for i := range sets {
		for j := range sets {
			dl.check(t)
			if (i*len(sets)+j)%29 != 0 && i != 0 && j != 0 && i != len(sets)-1 && j != len(sets)-1 {
				continue // a sample: each pair costs three scans of 65,536 ports
			}
			var u, in, m refSet
			for p := range 1 << 16 {
				u[p] = refs[i][p] || refs[j][p]
				in[p] = refs[i][p] && refs[j][p]
				m[p] = refs[i][p] && !refs[j][p]
			}
			checkSet(t, fmt.Sprintf("%d ∪ %d", i, j), sets[i].Union(sets[j]), &u)
			checkSet(t, fmt.Sprintf("%d ∩ %d", i, j), sets[i].Intersect(sets[j]), &in)
			checkSet(t, fmt.Sprintf("%d - %d", i, j), sets[i].Minus(sets[j]), &m)
			if eq := *refs[i] == *refs[j]; sets[i].Equal(sets[j]) != eq || sets[j].Equal(sets[i]) != eq {
				t.Fatalf("%d and %d: Equal %v, want %v", i, j, sets[i].Equal(sets[j]), eq)
			}
		}
	}
	// An empty set that has a bitmap (from a difference) equals the zero one.
	empty := opaque.PortRange(5, 6).Minus(opaque.PortRange(1, 10))
	if !empty.Equal(opaque.PortSet{}) || !(opaque.PortSet{}).Equal(empty) || !empty.IsEmpty() {
		t.Fatal("empty sets differ")
	}
}

// portErr is what a port list error tells.
type portErr struct {
	kind   error // ErrPortZero, ErrPortTooLarge, ErrReversedRange, ErrUnknownName, or nil: syntax
	item   string
	index  int
	offset int
}

// refParse parses a port list from ParsePortSetFunc's documentation:
// comma-separated items, spaces and tabs around items and the dash, ports
// 1-65535 with any leading zeros, "lo-hi" with lo <= hi, names of 1-15
// characters of [a-z0-9-] with a letter and no leading, trailing or double
// dash looked up with lookup (a digit-first name only when the lookup
// knows it), numbers above 2^32-1 a syntax error.
func refParse(s string, lookup opaque.PortLookup) (*refSet, *portErr) {
	r := new(refSet)
	if strings.Trim(s, " \t") == "" {
		return r, nil
	}
	off := 0
	for i, raw := range strings.Split(s, ",") {
		item := strings.TrimLeft(raw, " \t")
		itemOff := off + len(raw) - len(item)
		item = strings.TrimRight(item, " \t")
		off += len(raw) + 1
		fail := func(kind error) (*refSet, *portErr) {
			return nil, &portErr{kind: kind, item: item, index: i + 1, offset: itemOff}
		}
		num := func(d string) (int, error) {
			v, err := strconv.ParseUint(d, 10, 64)
			switch {
			case err != nil || v > 1<<32-1:
				return 0, errors.New("syntax")
			case v == 0:
				return 0, opaque.ErrPortZero
			case v > 65535:
				return 0, opaque.ErrPortTooLarge
			}
			return int(v), nil
		}
		if item == "" || item[0] == '+' || item[0] == '-' {
			return fail(nil)
		}
		if isName(item) && lookup != nil {
			if item[0] < '0' || item[0] > '9' {
				p, ok := lookup(item)
				if !ok {
					return fail(opaque.ErrUnknownName)
				}
				if p == 0 {
					return fail(opaque.ErrPortZero)
				}
				r[p] = true
				continue
			}
			if p, ok := lookup(item); ok && p != 0 && strings.Trim(item, "0123456789") != "" {
				r[p] = true
				continue
			}
		}
		if item[0] < '0' || item[0] > '9' {
			return fail(nil)
		}
		d := strings.IndexFunc(item, func(c rune) bool { return c < '0' || c > '9' })
		if d < 0 {
			d = len(item)
		}
		lo, err := num(item[:d])
		if err != nil {
			if err.Error() == "syntax" {
				return fail(nil)
			}
			return fail(err)
		}
		rest := strings.TrimLeft(item[d:], " \t")
		if rest == "" {
			r[lo] = true
			continue
		}
		if rest[0] != '-' {
			return fail(nil)
		}
		rest = strings.TrimLeft(rest[1:], " \t")
		if rest == "" || rest[0] < '0' || rest[0] > '9' {
			return fail(nil)
		}
		if strings.Trim(rest, "0123456789") != "" {
			// junk after the second number, unless the number itself fails first
			d := strings.IndexFunc(rest, func(c rune) bool { return c < '0' || c > '9' })
			if _, err := num(rest[:d]); err != nil && err.Error() != "syntax" {
				return fail(err)
			}
			return fail(nil)
		}
		hi, err := num(rest)
		if err != nil {
			if err.Error() == "syntax" {
				return fail(nil)
			}
			return fail(err)
		}
		if lo > hi {
			return fail(opaque.ErrReversedRange)
		}
		r.add(lo, hi)
	}
	return r, nil
}

func isName(s string) bool {
	if len(s) == 0 || len(s) > 15 || s[0] == '-' || s[len(s)-1] == '-' || strings.Contains(s, "--") {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == "" && strings.ContainsAny(s, "abcdefghijklmnopqrstuvwxyz")
}

func TestLimitsParsePortSet(t *testing.T) {
	opaque.Bound(t)
	names := map[string]uint16{
		"mysql": 3306, "a": 1, "z": 65535, "0a": 10, "9z": 90, "a0": 100, "a-b": 200, "abcdefghijklmno": 15,
		"abcdefghijklmnop": 16, "zero": 0, "80x": 8080, "http-admin": 9990,
	}
	lookup := func(n string) (uint16, bool) { p, ok := names[n]; return p, ok }
	items := []string{
		"0", "1", "00001", "63", "64", "65535", "065535", "65536", "4294967295", "4294967296", "99999999999999999999",
		"1-1", "1-2", "2-1", "63-64", "64-63", "1-65535", "0-5", "5-0", "1-65536", "1-4294967296", "65535-65535",
		"80 - 90", "80\t-\t90", "80- 90", "80 -90", "80-", "80 -", "-80", "+80", "80-+90", "80--90", "80-90-100",
		"80-90x", "80-70x", "80-0x", "80-65536x", "80x", "8 0", "x", "/", ":", "9", "a", "z", "A", "Z", "`", "{",
		"mysql", "MySQL", "a-b", "a--b", "-a", "a-", "abcdefghijklmno", "abcdefghijklmnop", "zero", "nope",
		"0a", "9z", "a0", "80x", "99x", "http-admin", "\x00", "１", "",
	}
	var inputs []string
	for _, it := range items {
		inputs = append(inputs, it, " "+it+" ", "\t"+it, "80,"+it, it+",443", "1,2, "+it+" ,3")
	}
	inputs = append(inputs, "", " ", "\t \t", ",", " , ", "80,", ",80", "80,,81")
	for _, in := range inputs {
		for _, lk := range []opaque.PortLookup{nil, lookup} {
			p, err := opaque.ParsePortSetFunc(in, lk)
			want, werr := refParse(in, lk)
			if werr == nil {
				if err != nil {
					t.Errorf("%q (lookup %v): %v, want %v", in, lk != nil, err, want.String())
					continue
				}
				checkSet(t, strconv.Quote(in), p, want)
				continue
			}
			var pe *opaque.PortListError
			if !errors.As(err, &pe) {
				t.Errorf("%q (lookup %v): %v, want an error on item %d", in, lk != nil, err, werr.index)
				continue
			}
			got := portErr{item: pe.Item, index: pe.Index, offset: pe.Offset}
			for _, k := range []error{opaque.ErrPortZero, opaque.ErrPortTooLarge, opaque.ErrReversedRange, opaque.ErrUnknownName} {
				if errors.Is(err, k) {
					got.kind = k
				}
			}
			if got != *werr {
				t.Errorf("%q (lookup %v): %v, want %+v", in, lk != nil, err, *werr)
			}
			if strings.Count(err.Error(), "\n") != 0 || !strings.HasPrefix(err.Error(), "opaque: ") {
				t.Errorf("%q: error %q is not one line with the package prefix", in, err)
			}
		}
	}
}

func TestLimitsAnnotations(t *testing.T) {
	opaque.Bound(t)
	for _, tc := range []struct {
		v    string
		want *bool
	}{
		{"true", ptr(true)}, {"TRUE", ptr(true)}, {" True\t", ptr(true)}, {"false", ptr(false)}, {" FaLsE ", ptr(false)},
		{"", nil}, {"yes", nil}, {"1", nil}, {"truee", nil}, {"tru", nil},
	} {
		l, err := opaque.LayerFromAnnotations(map[string]string{opaque.AnnotationEnableExternalProfiles: tc.v}, nil)
		switch {
		case tc.want == nil:
			var ae *opaque.AnnotationError
			if !errors.As(err, &ae) || !errors.Is(err, opaque.ErrNotBool) || !errors.Is(err, opaque.ErrInvalidAnnotation) || l.EnableExternalProfiles != nil {
				t.Errorf("%q: %v %v", tc.v, l.EnableExternalProfiles, err)
			}
		case err != nil || l.EnableExternalProfiles == nil || *l.EnableExternalProfiles != *tc.want:
			t.Errorf("%q: %v %v", tc.v, l.EnableExternalProfiles, err)
		}
	}
	// Every port key: a present key sets the field (an empty list is the
	// empty set), an absent one leaves it nil, a bad one is reported with
	// its key and leaves the field nil while the good keys are kept.
	keys := []string{opaque.AnnotationOpaquePorts, opaque.AnnotationSkipInboundPorts, opaque.AnnotationSkipOutboundPorts}
	field := func(l opaque.Layer, i int) *opaque.PortSet {
		return []*opaque.PortSet{l.OpaquePorts, l.SkipInboundPorts, l.SkipOutboundPorts}[i]
	}
	for i, k := range keys {
		l, err := opaque.LayerFromAnnotations(map[string]string{k: "", "other": "1"}, nil)
		if err != nil || field(l, i) == nil || !field(l, i).IsEmpty() {
			t.Errorf("%s empty: %v %v", k, field(l, i), err)
		}
		for j := range keys {
			if j != i && field(l, j) != nil {
				t.Errorf("%s set %s", k, keys[j])
			}
		}
		l, err = opaque.LayerFromAnnotations(map[string]string{k: "80,0", keys[(i+1)%3]: "1-2"}, nil)
		var ae *opaque.AnnotationError
		if !errors.As(err, &ae) || ae.Key != k || !errors.Is(err, opaque.ErrPortZero) || field(l, i) != nil ||
			field(l, (i+1)%3) == nil || field(l, (i+1)%3).String() != "1-2" {
			t.Errorf("%s bad: %v", k, err)
		}
	}
	// The value in the message is cut at 64 bytes.
	for _, n := range []int{63, 64, 65} {
		v := strings.Repeat("x", n)
		_, err := opaque.LayerFromAnnotations(map[string]string{opaque.AnnotationOpaquePorts: v}, nil)
		if cut := strings.Contains(err.Error(), v[:min(n, 64)]+"..."); cut != (n > 64) || !strings.Contains(err.Error(), v[:min(n, 64)]) {
			t.Errorf("%d-byte value: %q", n, err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// --- the transport header ---

// refDNSName: at most 253 characters plus an optional final dot, labels
// of 1-63 letters, digits, '-' or '_', none starting or ending with '-'.
func refDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// encodeHeader builds a header from raw protobuf fields.
func encodeHeader(msg []byte) []byte {
	b := []byte("transport.l5d.io/v1\r\n\r\n")
	b = binary.BigEndian.AppendUint32(b, uint32(len(msg)))
	return append(b, msg...)
}

func varint(v uint64) []byte { return binary.AppendUvarint(nil, v) }

func headerReason(err error) opaque.RejectReason {
	var he *opaque.HeaderError
	if errors.As(err, &he) {
		return he.Reason
	}
	return 0
}

func TestLimitsHeaderNames(t *testing.T) {
	opaque.Bound(t)
	label63 := strings.Repeat("a", 63)
	// 253 characters: four labels.
	n253 := label63 + "." + label63 + "." + label63 + "." + strings.Repeat("b", 61)
	names := []string{
		"a", "A", "z", "Z", "0", "9", "_", "-", "a-b", "a_b", "-a", "a-", "a.-b", "a-.b", "a..b", ".", "..", "a.", "a..",
		".a", "a/b", "a:b", "a@b", "a[b", "a`b", "a{b", "a b", "a\x00", "a\x7f", "a\xff", "é",
		label63, label63 + "a", label63 + ".b", label63 + "a.b", "b." + label63, "b." + label63 + "a",
		n253, n253 + ".", n253 + "b", n253 + "b.", n253[:252], n253 + "..", strings.Repeat("a.", 126) + "a",
	}
	for c := 0; c < 256; c++ {
		names = append(names, "x"+string(rune(c))+"y", string([]byte{byte(c)}))
	}
	for _, name := range names {
		want := refDNSName(name)
		// Written: a bad name is refused.
		var buf bytes.Buffer
		err := opaque.WriteHeader(&buf, opaque.Header{Port: 80, Name: name})
		if (err == nil) != want || err != nil && headerReason(err) != opaque.RejectBadName {
			t.Errorf("write %q: %v, want valid %v", name, err, want)
			continue
		}
		// Read: the same name in a message built by hand.
		msg := append([]byte{0x08, 80, 0x12}, varint(uint64(len(name)))...)
		h, err := opaque.ReadHeader(bytes.NewReader(encodeHeader(append(msg, name...))))
		if (err == nil) != want || err != nil && headerReason(err) != opaque.RejectBadName || want && h.Name != name {
			t.Errorf("read %q: %+v %v, want valid %v", name, h, err, want)
		}
	}
	// The name in an error message is cut at 64 bytes.
	for _, n := range []int{63, 64, 65} {
		name := strings.Repeat("-", n)
		err := opaque.WriteHeader(io.Discard, opaque.Header{Port: 1, Name: name})
		if cut := strings.Contains(err.Error(), name[:min(n, 64)]+"..."); cut != (n > 64) || !strings.Contains(err.Error(), name[:min(n, 64)]) {
			t.Errorf("%d-byte name: %q", n, err)
		}
	}
}

func TestLimitsHeaderFields(t *testing.T) {
	opaque.Bound(t)
	neg := varint(uint64(1<<64 - 1)) // int32 -1 as protobuf encodes it: ten bytes
	cases := []struct {
		name   string
		msg    []byte
		reason opaque.RejectReason // 0: valid
		want   opaque.Header
	}{
		{"port 1", []byte{0x08, 1}, 0, opaque.Header{Port: 1}},
		{"port 65535", append([]byte{0x08}, varint(65535)...), 0, opaque.Header{Port: 65535}},
		{"port 65536", append([]byte{0x08}, varint(65536)...), opaque.RejectBadPort, opaque.Header{}},
		{"port 0", []byte{0x08, 0}, opaque.RejectBadPort, opaque.Header{}},
		{"no port", nil, opaque.RejectBadPort, opaque.Header{}},
		{"port -1", append([]byte{0x08}, neg...), opaque.RejectBadPort, opaque.Header{}},
		{"port 2^32+80 (int32: 80)", append([]byte{0x08}, varint(1<<32+80)...), 0, opaque.Header{Port: 80}},
		{"port 2^31 (int32: negative)", append([]byte{0x08}, varint(1<<31)...), opaque.RejectBadPort, opaque.Header{}},
		{"last port wins", []byte{0x08, 1, 0x08, 2}, 0, opaque.Header{Port: 2}},
		{"empty name", []byte{0x08, 1, 0x12, 0}, 0, opaque.Header{Port: 1}},
		{"name then empty", []byte{0x08, 1, 0x12, 1, 'a', 0x12, 0}, 0, opaque.Header{Port: 1}},
		{"http1", []byte{0x08, 1, 0x1a, 2, 0x0a, 0}, 0, opaque.Header{Port: 1, SessionProtocol: opaque.SessionHTTP1}},
		{"http2", []byte{0x08, 1, 0x1a, 2, 0x12, 0}, 0, opaque.Header{Port: 1, SessionProtocol: opaque.SessionHTTP2}},
		{"http2 then empty", []byte{0x08, 1, 0x1a, 2, 0x12, 0, 0x1a, 0}, 0, opaque.Header{Port: 1, SessionProtocol: opaque.SessionHTTP2}},
		{"http2 then http1", []byte{0x08, 1, 0x1a, 4, 0x12, 0, 0x0a, 0}, 0, opaque.Header{Port: 1, SessionProtocol: opaque.SessionHTTP1}},
		{"session unknown field", []byte{0x08, 1, 0x1a, 2, 0x18, 5}, 0, opaque.Header{Port: 1}},
		{"session kind with a nested field", []byte{0x08, 1, 0x1a, 4, 0x0a, 2, 0x08, 1}, 0, opaque.Header{Port: 1, SessionProtocol: opaque.SessionHTTP1}},
		{"session kind nested bad", []byte{0x08, 1, 0x1a, 4, 0x0a, 2, 0x08, 0x80}, opaque.RejectBadProtobuf, opaque.Header{}},
		{"session kind nested bad tag", []byte{0x08, 1, 0x1a, 3, 0x0a, 1, 0x80}, opaque.RejectBadProtobuf, opaque.Header{}},
		{"session kind varint", []byte{0x08, 1, 0x1a, 2, 0x08, 1}, opaque.RejectBadProtobuf, opaque.Header{}},
		{"session kind 2 varint", []byte{0x08, 1, 0x1a, 2, 0x10, 1}, opaque.RejectBadProtobuf, opaque.Header{}},
		{"session kind truncated", []byte{0x08, 1, 0x1a, 2, 0x0a, 5}, opaque.RejectBadProtobuf, opaque.Header{}},
		{"session bad tag", []byte{0x08, 1, 0x1a, 1, 0x80}, opaque.RejectBadProtobuf, opaque.Header{}},
		{"session bad unknown", []byte{0x08, 1, 0x1a, 2, 0x18, 0x80}, opaque.RejectBadProtobuf, opaque.Header{}},
		{"session truncated", []byte{0x08, 1, 0x1a, 5, 0x0a}, opaque.RejectBadProtobuf, opaque.Header{}},
		{"unknown fields", []byte{0x08, 1, 0x20, 7, 0x2a, 1, 'x', 0x35, 1, 2, 3, 4}, 0, opaque.Header{Port: 1}},
		{"unknown field truncated", []byte{0x08, 1, 0x2a, 3, 'x'}, opaque.RejectBadProtobuf, opaque.Header{}},
		{"port as bytes", []byte{0x0a, 1, 1}, opaque.RejectBadProtobuf, opaque.Header{}},
		{"name as varint", []byte{0x08, 1, 0x10, 1}, opaque.RejectBadProtobuf, opaque.Header{}},
		{"session as varint", []byte{0x08, 1, 0x18, 1}, opaque.RejectBadProtobuf, opaque.Header{}},
		{"bad tag", []byte{0x08, 1, 0x80}, opaque.RejectBadProtobuf, opaque.Header{}},
		{"port truncated", []byte{0x08, 0x80}, opaque.RejectBadProtobuf, opaque.Header{}},
		{"name truncated", []byte{0x08, 1, 0x12, 2, 'a'}, opaque.RejectBadProtobuf, opaque.Header{}},
	}
	for _, tc := range cases {
		h, err := opaque.ReadHeader(bytes.NewReader(encodeHeader(tc.msg)))
		var u opaque.Header
		uerr := u.UnmarshalBinary(encodeHeader(tc.msg))
		if headerReason(err) != tc.reason || headerReason(uerr) != tc.reason || h != tc.want || u != tc.want {
			t.Errorf("%s: %+v %v / %+v %v, want %+v %v", tc.name, h, err, u, uerr, tc.want, tc.reason)
		}
	}
	// Encoding: every port and session protocol at its limits round-trips,
	// with EncodedLen the bytes written.
	for _, port := range []uint16{1, 127, 128, 16383, 16384, 65535} {
		for _, sp := range []opaque.SessionProtocol{opaque.SessionNone, opaque.SessionHTTP1, opaque.SessionHTTP2} {
			for _, name := range []string{"", "a", strings.Repeat("n", 63) + "." + strings.Repeat("m", 63)} {
				h := opaque.Header{Port: port, Name: name, SessionProtocol: sp}
				b, err := h.MarshalBinary()
				var back opaque.Header
				if err != nil || len(b) != h.EncodedLen() || back.UnmarshalBinary(b) != nil || back != h {
					t.Errorf("%+v: % x %v, back %+v", h, b, err, back)
				}
			}
		}
	}
	if _, err := (opaque.Header{Port: 1, SessionProtocol: opaque.SessionHTTP2 + 1}).MarshalBinary(); headerReason(err) != opaque.RejectBadProtobuf {
		t.Errorf("unknown session protocol: %v", err)
	}
	if _, err := (opaque.Header{}).MarshalBinary(); headerReason(err) != opaque.RejectBadPort {
		t.Errorf("port 0: %v", err)
	}
}

func TestLimitsHeaderLength(t *testing.T) {
	opaque.Bound(t)
	msg := func(n int) []byte { // a valid message of exactly n bytes (n >= 2)
		m := []byte{0x08, 1}
		if n == 3 {
			m = []byte{0x08, 0x81, 0x00} // port 1 as a two-byte varint
		}
		if n > 3 {
			m = append(m, 0x22)
			pad := n - 3
			// an unknown bytes field: tag, length varint, bytes
			l := pad - len(varint(uint64(pad)))
			for len(varint(uint64(l)))+l != pad {
				l--
			}
			m = append(m, varint(uint64(l))...)
			m = append(m, bytes.Repeat([]byte{'p'}, l)...)
		}
		if len(m) != n {
			panic(fmt.Sprintf("message of %d bytes, want %d", len(m), n))
		}
		return m
	}
	for _, tc := range []struct {
		maxLen, size int
		ok           bool
	}{
		{0, 1024, true}, {0, 1025, false}, {-1, 1024, true}, {-1, 1025, false},
		{2, 2, true}, {2, 3, false}, {100, 100, true}, {100, 101, false},
		{1 << 16, 1 << 16, true}, {1 << 16, 1<<16 + 1, false}, {1<<16 + 1, 1<<16 + 1, false}, {1 << 20, 1<<16 + 1, false},
	} {
		c := opaque.HeaderCodec{MaxLen: tc.maxLen}
		in := encodeHeader(msg(tc.size))
		h, n, err := c.Read(bytes.NewReader(append(in, "after"...)))
		if tc.ok && (err != nil || n != len(in) || h.Port != 1) || !tc.ok && headerReason(err) != opaque.RejectTooLong {
			t.Errorf("MaxLen %d, message of %d: %+v %d %v", tc.maxLen, tc.size, h, n, err)
		}
	}
	// Every prefix of a header is short (UnmarshalBinary's are checked by
	// TestUnmarshalBinaryShortAfterPreface).
	full := encodeHeader([]byte{0x08, 80})
	for n := 0; n < len(full); n++ {
		_, rerr := opaque.ReadHeader(bytes.NewReader(full[:n]))
		if want := opaque.RejectShort; n > 0 && headerReason(rerr) != want || n == 0 && !errors.Is(rerr, io.EOF) {
			t.Errorf("read %d of %d bytes: %v", n, len(full), rerr)
		}
	}
	var h opaque.Header
	if err := h.UnmarshalBinary(append(full, 0)); headerReason(err) != opaque.RejectBadProtobuf {
		t.Errorf("a byte after the message: %v", err)
	}
	for n := 1; n <= 27; n++ {
		bad := slices.Clone(full[:n])
		bad[n-1] ^= 0x20
		if err := h.UnmarshalBinary(bad); headerReason(err) != opaque.RejectNoPreface && n <= 23 {
			t.Errorf("preface byte %d changed: %v", n-1, err)
		}
		var he *opaque.HeaderError
		in := append(bad, full[n:]...)
		_, err := opaque.ReadHeader(bytes.NewReader(in))
		if n <= 23 && (!errors.As(err, &he) || he.Reason != opaque.RejectNoPreface || !bytes.Equal(he.Read, in[:27])) {
			t.Errorf("read, preface byte %d changed: %v", n-1, err)
		}
	}
}

// shortReader returns at most k bytes a call, and 0 bytes with no error
// zeros times before each read that makes progress.
type shortReader struct {
	r        io.Reader
	k, zeros int
	z        int
}

func (s *shortReader) Read(p []byte) (int, error) {
	if s.z < s.zeros {
		s.z++
		return 0, nil
	}
	s.z = 0
	return s.r.Read(p[:min(len(p), s.k)])
}

// lyingReader claims to have read more than it was given.
type lyingReader struct{ n int }

func (l lyingReader) Read(p []byte) (int, error) { return len(p) + l.n, nil }

func TestLimitsHeaderReads(t *testing.T) {
	opaque.Bound(t)
	full := encodeHeader([]byte{0x08, 80, 0x12, 1, 'a'})
	for _, k := range []int{1, 2, 23, 24, 27, 28} {
		for _, zeros := range []int{0, 99} {
			h, n, err := (&opaque.HeaderCodec{}).Read(&shortReader{r: bytes.NewReader(append(full, 'x')), k: k, zeros: zeros})
			if err != nil || n != len(full) || h.Port != 80 || h.Name != "a" {
				t.Errorf("reads of %d, %d empty: %+v %d %v", k, zeros, h, n, err)
			}
		}
		// 100 empty reads in a row: no progress.
		_, _, err := (&opaque.HeaderCodec{}).Read(&shortReader{r: bytes.NewReader(full), k: k, zeros: 100})
		if !errors.Is(err, io.ErrNoProgress) {
			t.Errorf("reads of %d, 100 empty: %v", k, err)
		}
	}
	for _, extra := range []int{1, 100} {
		_, _, err := (&opaque.HeaderCodec{}).Read(lyingReader{extra})
		if headerReason(err) != opaque.RejectIO {
			t.Errorf("a Read that claims %d bytes too many: %v", extra, err)
		}
	}
}

func TestLimitsCompile(t *testing.T) {
	opaque.Bound(t)
	// 256 distinct decisions per direction fit (detect with the default
	// timeout, skip and opaque are three of them); one more does not.
	many := func(n int, dir opaque.Direction) opaque.Policy {
		var p opaque.Policy
		for i := range n {
			p.Ports = append(p.Ports, opaque.PortPolicy{Direction: dir, Port: uint16(1000 + i),
				Decision: opaque.Decision{Action: opaque.ActionDetect, DetectTimeout: time.Duration(i+1) * time.Millisecond}})
		}
		return p
	}
	for _, dir := range []opaque.Direction{opaque.Inbound, opaque.Outbound} {
		tb, err := opaque.Compile(many(253, dir))
		if err != nil {
			t.Fatalf("253 timeouts %v: %v", dir, err)
		}
		if d := tb.Resolve(dir, 1252); d.DetectTimeout != 253*time.Millisecond {
			t.Errorf("port 1252 %v: %v", dir, d)
		}
		if d := tb.Resolve(1-dir, 1252); d.DetectTimeout != opaque.DefaultDetectTimeout {
			t.Errorf("port 1252, other direction: %v", d)
		}
		_, err = opaque.Compile(many(254, dir))
		var pe *opaque.PolicyError
		if !errors.As(err, &pe) || !errors.Is(err, opaque.ErrInvalidPolicy) {
			t.Fatalf("254 timeouts %v: %v", dir, err)
		}
		// No one entry is at fault: Index -1, and Port is one of the
		// entries that did not fit, as given.
		if p := pe.Port; pe.Index != -1 || p.Direction != dir || p.Port < 1000 || p.Port > 1253 ||
			p.Decision != (opaque.Decision{Action: opaque.ActionDetect, DetectTimeout: time.Duration(p.Port-999) * time.Millisecond}) {
			t.Errorf("254 timeouts %v: index %d, port %+v", dir, pe.Index, p)
		}
	}
	// The built-in policy detects for 10 s, as Linkerd does.
	for _, tb := range []*opaque.Table{opaque.DefaultTable(), nil} {
		if d := tb.Resolve(opaque.Outbound, 80); opaque.DefaultDetectTimeout != 10*time.Second || d.DetectTimeout != 10*time.Second {
			t.Errorf("DefaultDetectTimeout %v, port 80 %v", opaque.DefaultDetectTimeout, d)
		}
	}
	// Directions past Outbound are refused in a policy and detect in Resolve.
	if _, err := opaque.Compile(opaque.Policy{Ports: []opaque.PortPolicy{{Direction: opaque.Outbound + 1, Port: 1,
		Decision: opaque.Decision{Action: opaque.ActionOpaque}}}}); !errors.Is(err, opaque.ErrInvalidPolicy) {
		t.Errorf("direction 2: %v", err)
	}
	tb, err := opaque.Compile(opaque.Policy{Cluster: opaque.Layer{DetectTimeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []opaque.Direction{opaque.Outbound + 1, 255} {
		if d := tb.Resolve(dir, 25); d != (opaque.Decision{Action: opaque.ActionDetect, DetectTimeout: time.Second}) {
			t.Errorf("direction %d: %v", dir, d)
		}
	}
	// Timeouts: a layer's negative or zero timeout inherits; a port's
	// negative one is refused, zero takes the layers', one nanosecond is kept.
	for _, lt := range []time.Duration{-1, 0, 1} {
		tb, err := opaque.Compile(opaque.Policy{Namespace: opaque.Layer{DetectTimeout: lt},
			Ports: []opaque.PortPolicy{{Port: 80, Decision: opaque.Decision{Action: opaque.ActionDetect}}}})
		want := opaque.DefaultDetectTimeout
		if lt > 0 {
			want = lt
		}
		if err != nil || tb.DetectTimeout() != want || tb.Resolve(opaque.Inbound, 80).DetectTimeout != want {
			t.Errorf("layer timeout %v: %v", lt, err)
		}
	}
	for _, pt := range []time.Duration{-1, 0, 1} {
		tb, err := opaque.Compile(opaque.Policy{Ports: []opaque.PortPolicy{{Port: 80,
			Decision: opaque.Decision{Action: opaque.ActionDetect, DetectTimeout: pt}}}})
		switch {
		case pt < 0:
			if !errors.Is(err, opaque.ErrInvalidPolicy) {
				t.Errorf("port timeout %v: %v", pt, err)
			}
		case err != nil:
			t.Errorf("port timeout %v: %v", pt, err)
		case pt == 0 && tb.Resolve(opaque.Inbound, 80).DetectTimeout != opaque.DefaultDetectTimeout,
			pt == 1 && tb.Resolve(opaque.Inbound, 80).DetectTimeout != 1:
			t.Errorf("port timeout %v: %v", pt, tb.Resolve(opaque.Inbound, 80))
		}
	}
	// Skip wins over opaque on a shared port, in every word position.
	for _, port := range edgePorts {
		p := opaque.NewPortSet(uint16(port))
		both := opaque.NewPortSet(uint16(port), uint16(port%65535+1))
		tb, err := opaque.Compile(opaque.Policy{Cluster: opaque.Layer{OpaquePorts: &both, SkipInboundPorts: &p, SkipOutboundPorts: &p}})
		if err != nil {
			t.Fatal(err)
		}
		for _, dir := range []opaque.Direction{opaque.Inbound, opaque.Outbound} {
			if a := tb.Resolve(dir, uint16(port)).Action; a != opaque.ActionSkip {
				t.Errorf("port %d %v: %v", port, dir, a)
			}
			if a := tb.Resolve(dir, uint16(port%65535+1)).Action; a != opaque.ActionOpaque {
				t.Errorf("port %d %v: %v", port%65535+1, dir, a)
			}
			if a := tb.Resolve(dir, uint16(port%65535+2)).Action; port%65535+2 != port && a != opaque.ActionDetect && port%65535+2 < 65536 {
				t.Errorf("port %d %v: %v", port%65535+2, dir, a)
			}
		}
	}
	// Declared needs a real protocol.
	for _, proto := range []detect.Protocol{"", detect.Unknown} {
		_, err := opaque.Compile(opaque.Policy{Ports: []opaque.PortPolicy{{Port: 1, Decision: opaque.Decision{Action: opaque.ActionDeclared, Protocol: proto}}}})
		if !errors.Is(err, opaque.ErrInvalidPolicy) {
			t.Errorf("declared %q: %v", proto, err)
		}
	}
}

// deadline bounds each step of a test's loops: check must be called at
// least every few seconds (a step takes milliseconds), or the test binary
// fails at once with every goroutine's stack. A planted bug that makes a
// parser loop inside one call then fails the run seconds after the call,
// well within three times the package's test time, instead of hanging it.
type deadline struct {
	tm *time.Timer
	d  time.Duration
}

func newDeadline(t *testing.T) *deadline {
	d := 3 * time.Second
	if opaque.RaceEnabled {
		d *= 6
	}
	name := t.Name()
	dl := &deadline{d: d}
	dl.tm = time.AfterFunc(d, func() { panic(fmt.Sprintf("%s: a step ran past %v: a parser loops", name, d)) })
	t.Cleanup(func() { dl.tm.Stop() })
	return dl
}

func (d *deadline) check(*testing.T) { d.tm.Reset(d.d) }

func (d *deadline) stop() { d.tm.Stop() }
