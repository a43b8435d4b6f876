package opaque

import (
	"errors"
	"iter"
	"math/bits"
	"strconv"
	"strings"
)

// numWords is the number of 64-bit words in a port bitmap (65,536 bits, 8 KiB).
const numWords = 1 << 16 / 64

type bitmap [numWords]uint64

// PortSet is an immutable set of TCP ports.
//
// It is a 65,536-bit bitmap (8 KiB) behind a pointer, so a PortSet is one word to copy and Contains
// is a single load and mask: O(1), no allocation, safe for concurrent use. The zero value is the
// empty set. Operations that combine sets (Union, Intersect, Minus) return new sets and never
// change their operands.
//
// Port 0 is never a member: it is not a valid destination port.
type PortSet struct {
	b *bitmap // nil: empty set; never written after construction
}

// Contains reports whether port is in the set.
func (p PortSet) Contains(port uint16) bool {
	return p.b != nil && p.b[port>>6]&(1<<(port&63)) != 0
}

// word returns the i-th 64-port word of the bitmap (0 for the empty set).
func (p PortSet) word(i int) uint64 {
	if p.b == nil {
		return 0
	}
	return p.b[i]
}

// IsEmpty reports whether the set has no ports.
func (p PortSet) IsEmpty() bool {
	if p.b == nil {
		return true
	}
	for _, w := range p.b {
		if w != 0 {
			return false
		}
	}
	return true
}

// Len returns the number of ports in the set.
func (p PortSet) Len() int {
	if p.b == nil {
		return 0
	}
	n := 0
	for _, w := range p.b {
		n += bits.OnesCount64(w)
	}
	return n
}

// Equal reports whether p and q hold the same ports.
func (p PortSet) Equal(q PortSet) bool {
	switch {
	case p.b == q.b:
		return true
	case p.b == nil:
		return q.IsEmpty()
	case q.b == nil:
		return p.IsEmpty()
	}
	return *p.b == *q.b
}

// NewPortSet returns the set of the given ports. Port 0 is ignored.
func NewPortSet(ports ...uint16) PortSet {
	var b bitmap
	for _, port := range ports {
		if port != 0 {
			b[port>>6] |= 1 << (port & 63)
		}
	}
	return finish(&b)
}

// PortRange returns the set of ports lo through hi inclusive (lo is raised to 1 since port 0 is
// never a member). It returns the empty set when lo > hi.
func PortRange(lo, hi uint16) PortSet {
	var b bitmap
	if lo == 0 {
		lo = 1
	}
	if lo > hi {
		return PortSet{}
	}
	setRange(&b, lo, hi)
	return PortSet{b: &b}
}

// setRange sets bits lo..hi inclusive, a word at a time.
func setRange(b *bitmap, lo, hi uint16) {
	lw, hw := int(lo>>6), int(hi>>6)
	lmask := ^uint64(0) << (lo & 63)
	hmask := ^uint64(0) >> (63 - hi&63)
	if lw == hw {
		b[lw] |= lmask & hmask
		return
	}
	b[lw] |= lmask
	for i := lw + 1; i < hw; i++ {
		b[i] = ^uint64(0)
	}
	b[hw] |= hmask
}

// finish returns the empty zero value for an empty bitmap, so that empty sets cost nothing to keep.
func finish(b *bitmap) PortSet {
	b[0] &^= 1 // port 0 is never a member
	for _, w := range b {
		if w != 0 {
			return PortSet{b: b}
		}
	}
	return PortSet{}
}

// Union returns the ports in p or q. DefaultOpaquePorts().Union(extra) extends the default list.
func (p PortSet) Union(q PortSet) PortSet {
	switch {
	case p.b == nil:
		return q
	case q.b == nil:
		return p
	}
	var b bitmap
	for i := range b {
		b[i] = p.b[i] | q.b[i]
	}
	return finish(&b)
}

// Intersect returns the ports in both p and q.
func (p PortSet) Intersect(q PortSet) PortSet {
	if p.b == nil || q.b == nil {
		return PortSet{}
	}
	var b bitmap
	for i := range b {
		b[i] = p.b[i] & q.b[i]
	}
	return finish(&b)
}

// Minus returns the ports in p that are not in q.
func (p PortSet) Minus(q PortSet) PortSet {
	if p.b == nil || q.b == nil {
		return p
	}
	var b bitmap
	for i := range b {
		b[i] = p.b[i] &^ q.b[i]
	}
	return finish(&b)
}

// All yields the ports of the set in increasing order.
func (p PortSet) All() iter.Seq[uint16] {
	return func(yield func(uint16) bool) {
		if p.b == nil {
			return
		}
		for i, w := range p.b {
			for w != 0 {
				t := bits.TrailingZeros64(w)
				if !yield(uint16(i<<6 + t)) {
					return
				}
				w &= w - 1
			}
		}
	}
}

// Ranges yields the maximal runs of consecutive ports, [lo, hi] inclusive, in increasing order.
func (p PortSet) Ranges() iter.Seq2[uint16, uint16] {
	return func(yield func(lo, hi uint16) bool) {
		if p.b == nil {
			return
		}
		in := false
		var lo int
		for i, w := range p.b {
			if !in && w == 0 || in && w == ^uint64(0) {
				continue // fast path: a word with no boundary
			}
			for bit := 0; bit < 64; bit++ {
				set := w&(1<<bit) != 0
				port := i<<6 + bit
				if set && !in {
					in, lo = true, port
				} else if !set && in {
					in = false
					if !yield(uint16(lo), uint16(port-1)) {
						return
					}
				}
			}
		}
		if in {
			yield(uint16(lo), 65535)
		}
	}
}

// String returns the canonical form of the set: ports in increasing order, runs of two or more
// consecutive ports merged into an inclusive range "lo-hi", separated by commas with no spaces,
// e.g. "25,587,3306,4567-4568". The empty set is "". ParsePortSet(p.String()) is equal to p.
func (p PortSet) String() string {
	b, _ := p.AppendText(nil)
	return string(b)
}

// AppendText appends the canonical form (see String) to b. It never fails; it implements
// encoding.TextAppender.
func (p PortSet) AppendText(b []byte) ([]byte, error) {
	first := true
	for lo, hi := range p.Ranges() {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = strconv.AppendUint(b, uint64(lo), 10)
		if hi != lo {
			b = append(b, '-')
			b = strconv.AppendUint(b, uint64(hi), 10)
		}
	}
	return b, nil
}

// MarshalText implements encoding.TextMarshaler with the canonical form.
func (p PortSet) MarshalText() ([]byte, error) { return p.AppendText(nil) }

// UnmarshalText implements encoding.TextUnmarshaler with ParsePortSet.
func (p *PortSet) UnmarshalText(text []byte) error {
	q, err := ParsePortSet(string(text))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// Linkerd's default opaque ports (as of 2.11): SMTP, SMTP submission, MySQL, Galera, PostgreSQL,
// Redis, Elasticsearch, Memcache.
var defaultOpaquePorts = NewPortSet(25, 587, 3306, 4444, 5432, 6379, 9300, 11211)

// DefaultOpaquePorts returns Linkerd's default opaque ports: 25 (SMTP), 587 (SMTP), 3306 (MySQL),
// 4444 (Galera), 5432 (PostgreSQL), 6379 (Redis), 9300 (Elasticsearch) and 11211 (Memcache). These
// are server-speaks-first protocols (or clients that send no preamble), which protocol detection
// would only delay. Extend the list with Union, or replace it with another set.
func DefaultOpaquePorts() PortSet { return defaultOpaquePorts }

// Kinds of *PortListError that a caller may act on; test for them with errors.Is.
var (
	ErrPortZero      = errors.New("port 0 is not a valid port")
	ErrPortTooLarge  = errors.New("port is greater than 65535")
	ErrReversedRange = errors.New("range start is greater than its end")
	ErrUnknownName   = errors.New("unknown port name")
)

// Syntax errors: their messages say what is wrong, their identity is the parser's business.
var (
	errEmptyItem = errors.New("empty item")
	errJunk      = errors.New("not a port, a port range or a port name")
	errSign      = errors.New("ports take no sign")
	errOverflow  = errors.New("number does not fit in 32 bits")
)

// PortListError reports a bad item in a port list: which item, where, and why (Err). Use errors.As
// to get it; errors.Is tells ErrPortZero, ErrPortTooLarge, ErrReversedRange and ErrUnknownName
// apart from syntax errors (an empty item, a sign, anything else that is not a port, a range or a
// name).
type PortListError struct {
	Item   string // the offending item, spaces trimmed
	Index  int    // 1-based position of the item in the comma-separated list
	Offset int    // byte offset of the item in the input
	Err    error  // why: ErrPortZero, ErrPortTooLarge, ErrReversedRange, ErrUnknownName or syntax
}

// Error describes the problem, naming what was rejected.
func (e *PortListError) Error() string {
	return prefix + "port list item " + strconv.Itoa(e.Index) + " " + strconv.Quote(e.Item) +
		" (byte " + strconv.Itoa(e.Offset) + "): " + e.Err.Error()
}

// Unwrap returns the kind of error.
func (e *PortListError) Unwrap() error { return e.Err }

// PortLookup maps a container port name (a Kubernetes IANA_SVC_NAME such as "mysql" or
// "http-admin") to its number. It reports false for an unknown name.
type PortLookup func(name string) (uint16, bool)

// ParsePortSet parses a Linkerd port list: comma-separated ports and inclusive ranges "lo-hi",
// spaces tolerated around items and around the dash, as in "25,587,3306,4444,5432,6379,9300,11211"
// or "4567-4568, 8080". The empty (or all-space) string is the empty set. Errors are *PortListError
// values naming the offending item and its position.
func ParsePortSet(s string) (PortSet, error) {
	return ParsePortSetFunc(s, nil)
}

// ParsePortSetFunc is ParsePortSet with named ports: an item that is a Kubernetes port name
// (lowercase letters, digits and inner dashes, at least one letter, at most 15 characters) is
// looked up with lookup. With a nil lookup, names are rejected like any other junk.
func ParsePortSetFunc(s string, lookup PortLookup) (PortSet, error) {
	if strings.TrimLeft(s, " \t") == "" {
		return PortSet{}, nil
	}
	var b bitmap
	index := 0
	for off := 0; off <= len(s); {
		end := strings.IndexByte(s[off:], ',')
		if end < 0 {
			end = len(s)
		} else {
			end += off
		}
		index++
		item, itemOff := trimSpaces(s[off:end], off)
		lo, hi, err := parseItem(item, lookup)
		if err != nil {
			return PortSet{}, &PortListError{Item: item, Index: index, Offset: itemOff, Err: err}
		}
		setRange(&b, lo, hi)
		off = end + 1
	}
	return finish(&b), nil
}

// MustParsePortSet is ParsePortSet for constant lists known to be valid; it panics on an error. Use
// ParsePortSet for input from users.
func MustParsePortSet(s string) PortSet {
	p, err := ParsePortSet(s)
	if err != nil {
		panic(err)
	}
	return p
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

// trimSpaces trims spaces and tabs and returns the new offset of the item.
func trimSpaces(s string, off int) (string, int) {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	j := len(s)
	for j > i && isSpace(s[j-1]) {
		j--
	}
	return s[i:j], off + i
}

// parseItem parses one trimmed item: "80", "80-90", "80 - 90" or a name.
func parseItem(item string, lookup PortLookup) (lo, hi uint16, err error) {
	if item == "" {
		return 0, 0, errEmptyItem
	}
	if item[0] == '+' || item[0] == '-' {
		return 0, 0, errSign
	}
	if !isDigit(item[0]) {
		if lookup != nil && isPortName(item) {
			port, ok := lookup(item)
			if !ok {
				return 0, 0, ErrUnknownName
			}
			if port == 0 {
				return 0, 0, ErrPortZero
			}
			return port, port, nil
		}
		return 0, 0, errJunk
	}
	if lookup != nil && isPortName(item) && !allDigits(item) {
		// A name such as "8x0" may start with a digit.
		port, ok := lookup(item)
		if ok && port != 0 {
			return port, port, nil
		}
	}
	first, rest, err := parseNumber(item)
	if err != nil {
		return 0, 0, err
	}
	rest = strings.TrimLeft(rest, " \t")
	if rest == "" {
		return first, first, nil
	}
	if rest[0] != '-' {
		return 0, 0, errJunk
	}
	rest = strings.TrimLeft(rest[1:], " \t")
	if rest == "" {
		return 0, 0, errJunk // "80-": a range without an end
	}
	if rest[0] == '+' || rest[0] == '-' {
		return 0, 0, errSign
	}
	if !isDigit(rest[0]) {
		return 0, 0, errJunk
	}
	second, rest, err := parseNumber(rest)
	if err != nil {
		return 0, 0, err
	}
	if rest != "" {
		return 0, 0, errJunk
	}
	if first > second {
		return 0, 0, ErrReversedRange
	}
	return first, second, nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// parseNumber parses the leading run of digits of s (s[0] is a digit) as a port and returns the
// rest.
func parseNumber(s string) (uint16, string, error) {
	var v uint64
	i := 0
	overflow := false
	for ; i < len(s) && isDigit(s[i]); i++ {
		if !overflow {
			v = v*10 + uint64(s[i]-'0')
			overflow = v > 1<<32-1
		}
	}
	switch {
	case overflow:
		return 0, "", errOverflow
	case v == 0:
		return 0, "", ErrPortZero
	case v > 65535:
		return 0, "", ErrPortTooLarge
	}
	return uint16(v), s[i:], nil
}

// isPortName reports whether s is a Kubernetes container port name (IANA_SVC_NAME): 1-15 characters
// of [a-z0-9-], at least one letter, no leading, trailing or doubled dash.
func isPortName(s string) bool {
	if len(s) == 0 || len(s) > 15 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	letter := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z':
			letter = true
		case isDigit(c):
		case c == '-':
			if s[i-1] == '-' {
				return false
			}
		default:
			return false
		}
	}
	return letter
}
