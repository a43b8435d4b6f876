package main

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
)

// A route sends TLS connections whose SNI matches Pattern to Backend.
//
// Pattern is an exact host name ("a.test") or a wildcard "*.suffix"
// ("*.example.test"), which matches every name that ends in ".suffix" with
// at least one more label ("x.example.test", "x.y.example.test"; not
// "example.test"), as nginx's server_name wildcards do. Names compare
// case-insensitively and without a trailing dot. An exact route wins over
// any wildcard; among wildcards the longest suffix wins.
type route struct {
	Pattern string
	Backend string
}

// parseRoute parses the "-route" flag's value, "PATTERN=HOST:PORT".
func parseRoute(s string) (route, error) {
	pattern, backend, ok := strings.Cut(s, "=")
	if !ok {
		return route{}, fmt.Errorf("route %q: want NAME=HOST:PORT (NAME a host name or *.suffix)", s)
	}
	p, err := normalizePattern(pattern)
	if err != nil {
		return route{}, fmt.Errorf("route %q: %w", s, err)
	}
	if err := checkBackend(backend); err != nil {
		return route{}, fmt.Errorf("route %q: %w", s, err)
	}
	return route{Pattern: p, Backend: backend}, nil
}

// normalizePattern lower-cases a pattern, drops a trailing dot and checks it.
func normalizePattern(p string) (string, error) {
	name := normalizeName(p)
	if name == "" {
		return "", errors.New("empty name")
	}
	if name == "*" {
		return "", errors.New(`"*" alone is not a pattern; use -default for a catch-all backend`)
	}
	host := name
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		host = rest
	}
	if err := checkHostName(host); err != nil {
		return "", err
	}
	return name, nil
}

// normalizeName is how SNI values and patterns are compared: lower case,
// no trailing dot.
func normalizeName(s string) string {
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

// checkHostName accepts a DNS host name of letters, digits, hyphens and
// underscores (labels of 1 to 63 bytes, no hyphen at either end of a label,
// 253 bytes at most).
func checkHostName(h string) error {
	if len(h) > 253 {
		return fmt.Errorf("name %q is longer than 253 bytes", h)
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("name %q: every label must have 1 to 63 bytes", h)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("name %q: a label may not start or end with '-'", h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				if c == '*' {
					return fmt.Errorf("name %q: '*' is only allowed as the whole first label (*.example.test)", h)
				}
				return fmt.Errorf("name %q: invalid character %q", h, c)
			}
		}
	}
	return nil
}

// checkBackend accepts HOST:PORT with a non-empty host and a port in 1-65535.
func checkBackend(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("backend %q: %v", addr, err)
	}
	if host == "" {
		return fmt.Errorf("backend %q: missing host", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("backend %q: port must be a number from 1 to 65535", addr)
	}
	return nil
}

// router maps an SNI value to a backend.
type router struct {
	exact map[string]string
	wild  []wildRoute // longest suffix first
	def   string      // "" when unknown names are refused
}

// wildRoute is a "*.suffix" route.
type wildRoute struct {
	suffix  string // ".suffix"
	pattern string // "*.suffix"
	backend string
}

// newRouter builds a router; the same pattern given twice is an error.
func newRouter(routes []route, def string) (*router, error) {
	r := &router{exact: make(map[string]string), def: def}
	seen := make(map[string]bool)
	for _, rt := range routes {
		p, err := normalizePattern(rt.Pattern)
		if err != nil {
			return nil, fmt.Errorf("route %q: %w", rt.Pattern, err)
		}
		if err := checkBackend(rt.Backend); err != nil {
			return nil, fmt.Errorf("route %q: %w", rt.Pattern, err)
		}
		if seen[p] {
			return nil, fmt.Errorf("route %q given twice", p)
		}
		seen[p] = true
		if suffix, ok := strings.CutPrefix(p, "*"); ok {
			r.wild = append(r.wild, wildRoute{suffix: suffix, pattern: p, backend: rt.Backend})
		} else {
			r.exact[p] = rt.Backend
		}
	}
	if def != "" {
		if err := checkBackend(def); err != nil {
			return nil, fmt.Errorf("default: %w", err)
		}
	}
	sort.SliceStable(r.wild, func(i, j int) bool { return len(r.wild[i].suffix) > len(r.wild[j].suffix) })
	return r, nil
}

// lookup returns the backend for sni and the rule that chose it: the
// pattern, or "default". ok is false when the name is unknown and there is
// no default route.
func (r *router) lookup(sni string) (backend, rule string, ok bool) {
	name := normalizeName(sni)
	if name != "" {
		if b, ok := r.exact[name]; ok {
			return b, name, true
		}
		for _, w := range r.wild {
			if len(name) > len(w.suffix) && strings.HasSuffix(name, w.suffix) {
				return w.backend, w.pattern, true
			}
		}
	}
	if r.def != "" {
		return r.def, "default", true
	}
	return "", "", false
}
