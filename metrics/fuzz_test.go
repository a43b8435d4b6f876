package metrics

import (
	"net/http"
	"strconv"
	"testing"
)

// FuzzGRPCStatusLabel: whatever a peer puts in grpc-status, the label
// takes one of a bounded set of values and classification agrees with it.
func FuzzGRPCStatusLabel(f *testing.F) {
	for _, s := range []string{"", "0", "5", " 14 ", "63", "64", "-1", "abc", "99999999999999999999", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{}
		h.Set("Grpc-Status", v)
		g := grpcFromHeader(h)
		label := grpcLabel(g)
		switch {
		case label == "" || label == Other:
		default:
			n, err := strconv.Atoi(label)
			if err != nil || n < 0 || n > grpcMax {
				t.Fatalf("grpc-status %q gave label %q", v, label)
			}
		}
		if label != "" && classify(200, g) != (label != "0") {
			t.Fatalf("grpc-status %q (label %q) misclassified", v, label)
		}
	})
}

// FuzzAuthorityLabel: the authority label never takes more than the cap
// plus "other" distinct values, and an allow-list only yields its entries
// or "other".
func FuzzAuthorityLabel(f *testing.F) {
	for _, s := range []string{"a.test", "A.TEST:80", "[::1]:8080", "", "x", "web.example:8080", "WEB.example"} {
		f.Add(s, "b.test", "c.test")
	}
	f.Fuzz(func(t *testing.T, a, b, c string) {
		capped := newHTTPLabeler(HTTPOptions{MaxAuthorities: 2})
		allow := newHTTPLabeler(HTTPOptions{Authorities: []string{"web.example", "api.example:8443"}})
		seen := map[string]bool{}
		for _, host := range []string{a, b, c, a + "x", "Z" + b} {
			req := &http.Request{Host: host}
			seen[capped.key(req, host).authority] = true
			switch got := allow.key(req, host).authority; got {
			case "web.example", "api.example:8443", Other:
			default:
				t.Fatalf("allow-list gave %q for %q", got, host)
			}
		}
		delete(seen, Other)
		if len(seen) > 2 {
			t.Fatalf("cap 2 exceeded: %v", seen)
		}
	})
}
