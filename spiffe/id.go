package spiffe

import (
	"net/url"
	"strings"
)

// Limits of the SPIFFE ID specification.
const (
	// MaxIDLength is the longest SPIFFE ID, in bytes, that ParseID accepts: the specification
	// requires implementations to support IDs up to 2048 bytes and not to generate longer ones.
	MaxIDLength = 2048
	// MaxTrustDomainLength is the longest trust domain name, in bytes.
	MaxTrustDomainLength = 255
)

const scheme = "spiffe://"

// TrustDomain is a SPIFFE trust domain, such as example.org. The zero value is no trust domain; any
// other value is a valid name. TrustDomains compare with ==.
type TrustDomain struct {
	name string
}

// ParseTrustDomain parses a trust domain name ("example.org") or the SPIFFE ID of a trust domain
// ("spiffe://example.org"). The name must be 1 to [MaxTrustDomainLength] bytes of lowercase letters,
// digits, '.', '-' and '_'. Errors match [ErrInvalidTrustDomain].
//
// Unlike go-spiffe's TrustDomainFromString, it refuses a SPIFFE ID with a path
// ("spiffe://example.org/web"): that is a workload, not a trust domain.
func ParseTrustDomain(s string) (TrustDomain, error) {
	if name, ok := strings.CutPrefix(s, scheme); ok {
		if i := strings.IndexByte(name, '/'); i >= 0 {
			return TrustDomain{}, newError(ErrInvalidTrustDomain, s, "a trust domain ID has no path")
		}
		s = name
	}
	if detail := checkTrustDomain(s); detail != "" {
		return TrustDomain{}, newError(ErrInvalidTrustDomain, s, detail)
	}
	return TrustDomain{name: s}, nil
}

// MustParseTrustDomain is [ParseTrustDomain] for constants in tests and examples: it panics on an
// invalid trust domain.
func MustParseTrustDomain(s string) TrustDomain {
	td, err := ParseTrustDomain(s)
	if err != nil {
		panic(err)
	}
	return td
}

// Name returns the trust domain name, "example.org"; "" for the zero value.
func (td TrustDomain) Name() string { return td.name }

// String returns the trust domain name, as Name does.
func (td TrustDomain) String() string { return td.name }

// IsZero reports whether td is the zero value.
func (td TrustDomain) IsZero() bool { return td.name == "" }

// ID returns the SPIFFE ID of the trust domain itself, spiffe://example.org; the zero ID for the
// zero trust domain.
func (td TrustDomain) ID() ID {
	if td.name == "" {
		return ID{}
	}
	return ID{s: scheme + td.name, end: len(scheme) + len(td.name)}
}

// ID is a SPIFFE ID, spiffe://trust-domain/path. The zero value is no ID; any other value is valid
// by the SPIFFE ID specification. IDs compare with == and can be map keys.
type ID struct {
	s   string // the whole ID
	end int    // the index in s where the trust domain ends and the path starts
}

// ParseID parses a SPIFFE ID. It accepts exactly what the SPIFFE ID specification allows (see the
// package documentation) up to [MaxIDLength] bytes; errors match [ErrInvalidID], and also
// [ErrInvalidTrustDomain] when the trust domain is at fault.
func ParseID(s string) (ID, error) {
	if len(s) > MaxIDLength {
		return ID{}, newError(ErrInvalidID, s, "longer than 2048 bytes")
	}
	rest, ok := strings.CutPrefix(s, scheme)
	if !ok {
		return ID{}, newError(ErrInvalidID, s, "scheme is not spiffe://")
	}
	end := strings.IndexByte(rest, '/')
	if end < 0 {
		end = len(rest)
	}
	if detail := checkTrustDomain(rest[:end]); detail != "" {
		e := newError(ErrInvalidID, s, detail)
		e.kinds = append(e.kinds, ErrInvalidTrustDomain)
		return ID{}, e
	}
	if detail := checkPath(rest[end:]); detail != "" {
		return ID{}, newError(ErrInvalidID, s, detail)
	}
	return ID{s: s, end: len(scheme) + end}, nil
}

// MustParseID is [ParseID] for constants in tests and examples: it panics on an invalid ID.
func MustParseID(s string) ID {
	id, err := ParseID(s)
	if err != nil {
		panic(err)
	}
	return id
}

// IDFromPath returns the ID of path in td. The path is empty (the trust domain's own ID) or starts
// with '/' and is valid by the specification. Errors match [ErrInvalidID].
func IDFromPath(td TrustDomain, path string) (ID, error) {
	return fromPath(td, path, path)
}

// IDFromSegments returns the ID in td whose path is the given segments, each of them a valid path
// segment (no '/'). No segments: the trust domain's own ID. Errors match [ErrInvalidID].
func IDFromSegments(td TrustDomain, segments ...string) (ID, error) {
	for _, seg := range segments {
		if detail := checkSegment(seg); detail != "" {
			return ID{}, newError(ErrInvalidID, seg, "path segment: "+detail)
		}
	}
	path := ""
	if len(segments) > 0 {
		path = "/" + strings.Join(segments, "/")
	}
	return fromPath(td, path, path)
}

func fromPath(td TrustDomain, path, quoted string) (ID, error) {
	if td.IsZero() {
		return ID{}, newError(ErrInvalidID, quoted, "no trust domain")
	}
	if path != "" && path[0] != '/' {
		return ID{}, newError(ErrInvalidID, quoted, "path does not start with '/'")
	}
	if detail := checkPath(path); detail != "" {
		return ID{}, newError(ErrInvalidID, quoted, detail)
	}
	s := scheme + td.name + path
	if len(s) > MaxIDLength {
		return ID{}, newError(ErrInvalidID, s, "longer than 2048 bytes")
	}
	return ID{s: s, end: len(scheme) + len(td.name)}, nil
}

// String returns the ID, spiffe://example.org/path; "" for the zero value.
func (id ID) String() string { return id.s }

// TrustDomain returns the ID's trust domain.
func (id ID) TrustDomain() TrustDomain {
	if id.s == "" {
		return TrustDomain{}
	}
	return TrustDomain{name: id.s[len(scheme):id.end]}
}

// Path returns the ID's path, "/ns/default/sa/web": empty or starting with '/', never ending with
// one.
func (id ID) Path() string { return id.s[id.end:] }

// IsZero reports whether id is the zero value.
func (id ID) IsZero() bool { return id.s == "" }

// MemberOf reports whether id belongs to the trust domain td.
func (id ID) MemberOf(td TrustDomain) bool { return !id.IsZero() && id.TrustDomain() == td }

// URL returns the ID as a URL, for a certificate's URI SAN; nil for the zero value.
func (id ID) URL() *url.URL {
	if id.IsZero() {
		return nil
	}
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain().name, Path: id.Path()}
}

// checkTrustDomain returns what is wrong with the trust domain name s, or "".
func checkTrustDomain(s string) string {
	switch {
	case s == "":
		return "trust domain is missing"
	case len(s) > MaxTrustDomainLength:
		return "trust domain is longer than 255 bytes"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return "trust domain characters are limited to lowercase letters, digits, '.', '-' and '_'" +
				badChar(c)
		}
	}
	return ""
}

// checkPath returns what is wrong with the path p ("" or starting with '/'), or "".
func checkPath(p string) string {
	if p == "" {
		return ""
	}
	if p == "/" || p[len(p)-1] == '/' {
		return "path has a trailing slash"
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "" {
			return "path has an empty segment"
		}
		if detail := checkSegment(seg); detail != "" {
			return detail
		}
	}
	return ""
}

// checkSegment returns what is wrong with the path segment seg, or "".
func checkSegment(seg string) string {
	switch seg {
	case "":
		return "path has an empty segment"
	case ".", "..":
		return "path has a dot segment"
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' ||
			c == '_') {
			return "path characters are limited to letters, digits, '.', '-' and '_'" + badChar(c)
		}
	}
	return ""
}

func badChar(c byte) string {
	switch c {
	case ':':
		return " (a port?)"
	case '@':
		return " (user info?)"
	case '?':
		return " (a query?)"
	case '#':
		return " (a fragment?)"
	case '%':
		return " (percent-encoding is not allowed)"
	}
	if 'A' <= c && c <= 'Z' {
		return " (uppercase?)"
	}
	return ""
}
