package iptables

import (
	"strings"
	"testing"
)

// FuzzParsePorts: no panic; every range parsed is valid and renders in the
// multiport syntax.
func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"25,587,4567-4568", "", "1-65535", "0", "9-3", " 80 , 443 ", "1-", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParsePorts(s)
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.Lo == 0 || r.Hi < r.Lo {
				t.Fatalf("bad range %+v from %q", r, s)
			}
			if strings.Contains(r.String(), "-") {
				t.Fatalf("range %+v renders as %q", r, r.String())
			}
		}
		for _, g := range multiport(rs) {
			n := 0
			for _, p := range strings.Split(g, ",") {
				n++
				if strings.Contains(p, ":") {
					n++
				}
			}
			if n > 15 {
				t.Fatalf("multiport group %q has %d ports", g, n)
			}
		}
	})
}
