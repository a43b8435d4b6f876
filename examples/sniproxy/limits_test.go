package main

// Limits of the -route parser and the router: host names at 253 and 254
// bytes and labels at 63 and 64, every byte at the edges of the accepted
// character classes, ports at 0, 1, 65535 and 65536, and lookups on names
// one label longer than, equal to and shorter than a wildcard's suffix.
// scripts/mutate runs these (TestLimits*) for each planted bug.

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// refHostName: labels of 1-63 bytes of [a-z0-9_-], no '-' at either end,
// 253 bytes at most.
func refHostName(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		if strings.Trim(l, "abcdefghijklmnopqrstuvwxyz0123456789_-") != "" {
			return false
		}
	}
	return true
}

func TestLimitsRouteNames(t *testing.T) {
	defer boundTime(t)()
	l63 := strings.Repeat("a", 63)
	n253 := l63 + "." + l63 + "." + l63 + "." + strings.Repeat("b", 61)
	names := []string{
		"a", "0", "9", "z", "_", "-", "a-b", "-a", "a-", "a..b", ".a", "a.b", l63, l63 + "a", "x." + l63, "x." + l63 + "a",
		n253, n253[:252], n253 + "c", "x.*", "*.*.a", "a*", "A", "é",
	}
	for c := 0; c < 256; c++ {
		if c != '=' { // "x=y" is the pattern "x" and a backend
			names = append(names, "x"+string([]byte{byte(c)})+"y")
		}
	}
	for _, name := range names {
		for _, pat := range []string{name, "*." + name, name + ".", strings.ToUpper(name)} {
			want := refHostName(strings.TrimSuffix(strings.ToLower(strings.TrimPrefix(pat, "*.")), "."))
			if strings.ToLower(pat) == "*" || strings.TrimSuffix(pat, ".") == "" {
				want = false
			}
			r, err := parseRoute(pat + "=h:1")
			if (err == nil) != want {
				t.Errorf("%q: %v, want valid %v", pat, err, want)
				continue
			}
			if err == nil && r.Pattern != strings.TrimSuffix(strings.ToLower(pat), ".") {
				t.Errorf("%q: pattern %q", pat, r.Pattern)
			}
			if err != nil && strings.ContainsRune(err.Error(), '\n') {
				t.Errorf("%q: error on more than one line", pat)
			}
		}
	}
	for _, tc := range []struct {
		backend string
		ok      bool
	}{
		{"h:0", false}, {"h:1", true}, {"h:65535", true}, {"h:65536", false}, {"h:-1", false}, {"h:x", false},
		{":1", false}, {"h", false}, {"[::1]:443", true}, {"h:", false},
	} {
		if _, err := parseRoute("a.test=" + tc.backend); (err == nil) != tc.ok {
			t.Errorf("backend %q: %v, want ok %v", tc.backend, err, tc.ok)
		}
		if _, err := newRouter(nil, tc.backend); (err == nil) != tc.ok {
			t.Errorf("default %q: %v, want ok %v", tc.backend, err, tc.ok)
		}
	}
}

func TestLimitsRouteLookup(t *testing.T) {
	defer boundTime(t)()
	r, err := newRouter([]route{
		{"*.b.test", "wild-b:1"}, {"*.test", "wild:1"}, {"x.b.test", "exact:1"}, {"*.a.b.test", "wild-ab:1"},
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ sni, backend, rule string }{
		{"x.b.test", "exact:1", "x.b.test"},
		{"X.B.TEST.", "exact:1", "x.b.test"},
		{"y.b.test", "wild-b:1", "*.b.test"},
		{"z.a.b.test", "wild-ab:1", "*.a.b.test"},
		{"a.b.test", "wild-b:1", "*.b.test"}, // "*.a.b.test" needs one more label
		{"b.test", "wild:1", "*.test"},
		{".b.test", "wild:1", "*.test"}, // as long as "*.b.test"'s suffix: no label before it
		{"test", "", ""},
		{".test", "", ""}, // as long as the suffix: no label before it
		{"xtest", "", ""},
		{"", "", ""},
	} {
		b, rule, ok := r.lookup(tc.sni)
		if b != tc.backend || rule != tc.rule || ok != (tc.backend != "") {
			t.Errorf("%q: %q %q %v, want %q %q", tc.sni, b, rule, ok, tc.backend, tc.rule)
		}
	}
	// A default catches the rest, and never wins over a route.
	r, err = newRouter([]route{{"a.test", "a:1"}}, "def:1")
	if err != nil {
		t.Fatal(err)
	}
	for sni, want := range map[string]string{"a.test": "a:1", "b.test": "def:1", "": "def:1"} {
		if b, _, ok := r.lookup(sni); b != want || !ok {
			t.Errorf("%q: %q", sni, b)
		}
	}
	if _, err := newRouter([]route{{"a.test", "a:1"}, {"A.test.", "b:1"}}, ""); err == nil {
		t.Error("the same pattern twice")
	}
	if _, err := newRouter([]route{{"a.test", "a:0"}}, ""); err == nil {
		t.Error("port 0")
	}
	if _, err := newRouter([]route{{"*", "a:1"}}, ""); err == nil {
		t.Error(`"*"`)
	}
}

// boundTime makes the test binary fail at once, with every goroutine's
// stack, when a test runs past its bound: a planted bug that makes a parser
// loop then fails in seconds instead of hanging until the run's timeout.
func boundTime(t *testing.T) (stop func()) {
	const d = 60 * time.Second
	tm := time.AfterFunc(d, func() { panic(fmt.Sprintf("%s ran past %v: a parser loops", t.Name(), d)) })
	return func() { tm.Stop() }
}
