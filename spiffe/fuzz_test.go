package spiffe_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sniffsplice/sniff/spiffe"
)

// FuzzParseID checks the invariants of ParseID on any input: no panic; an accepted ID prints as its
// input, is within the limits, is made of valid parts and is rebuilt identically from its trust
// domain and path or segments; a refused one matches ErrInvalidID. Its seed corpus is
// testdata/fuzz/FuzzParseID.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{
		"spiffe://example.org/ns/default/sa/web", "spiffe://example.org", "spiffe://td/a/b/c",
		"spiffe://example.org/", "spiffe://Example.org", "spiffe://example.org:80", "spiffe://u@td/x",
		"spiffe://td/a//b", "spiffe://td/../x", "spiffe://td/x?y", "spiffe://td/x#y", "spiffe://td/%41",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := spiffe.ParseID(s)
		if err != nil {
			if !errors.Is(err, spiffe.ErrInvalidID) {
				t.Fatalf("ParseID(%q): error %v does not match ErrInvalidID", s, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("ParseID(%q): multi-line error %q", s, err)
			}
			if !id.IsZero() {
				t.Fatalf("ParseID(%q): non-zero ID with an error", s)
			}
			return
		}
		if id.String() != s || len(s) > spiffe.MaxIDLength {
			t.Fatalf("ParseID(%q) = %q", s, id)
		}
		td := id.TrustDomain()
		if len(td.Name()) > spiffe.MaxTrustDomainLength || strings.ToLower(td.Name()) != td.Name() {
			t.Fatalf("ParseID(%q): trust domain %q", s, td)
		}
		if td2, err := spiffe.ParseTrustDomain(td.Name()); err != nil || td2 != td {
			t.Fatalf("ParseID(%q): trust domain %q does not parse back: %v", s, td, err)
		}
		p := id.Path()
		if id.String() != "spiffe://"+td.Name()+p {
			t.Fatalf("ParseID(%q): trust domain %q + path %q", s, td, p)
		}
		if again, err := spiffe.IDFromPath(td, p); err != nil || again != id {
			t.Fatalf("IDFromPath(%q, %q) = %q, %v", td, p, again, err)
		}
		var segs []string
		if p != "" {
			segs = strings.Split(p[1:], "/")
		}
		if again, err := spiffe.IDFromSegments(td, segs...); err != nil || again != id {
			t.Fatalf("IDFromSegments(%q, %q) = %q, %v", td, segs, again, err)
		}
		for _, seg := range segs {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("ParseID(%q): segment %q", s, seg)
			}
		}
		if u := id.URL(); u.String() != s {
			t.Fatalf("ParseID(%q).URL() = %q", s, u)
		}
	})
}
