package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParseRoute checks the -route parser on any input: it never panics, a
// route it accepts is normalized (lower case, no trailing dot), parses
// again to itself, builds a router, and that router sends the names the
// pattern covers to its backend.
func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{
		"a.test=127.0.0.1:9001",
		"*.example.test=localhost:9002",
		"A.Test.=[::1]:443",
		"a.*.test=127.0.0.1:1",
		"*=127.0.0.1:1",
		"a..test=1.2.3.4:5",
		"a.test",
		"=127.0.0.1:1",
		"xn--bcher-kva.example=h:65535",
		"a.test=127.0.0.1:0",
		"_acme.a-b.test=h:1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseRoute(s)
		if err != nil {
			return
		}
		require.Equal(t, strings.ToLower(r.Pattern), r.Pattern)
		require.False(t, strings.HasSuffix(r.Pattern, "."))
		again, err := parseRoute(r.Pattern + "=" + r.Backend)
		require.NoError(t, err)
		require.Equal(t, r, again)

		rt, err := newRouter([]route{r}, "")
		require.NoError(t, err)
		name := r.Pattern
		if suffix, ok := strings.CutPrefix(r.Pattern, "*."); ok {
			name = "x." + suffix
			_, _, ok := rt.lookup(suffix)
			require.False(t, ok, "a wildcard does not cover its bare suffix %q", suffix)
		}
		b, _, ok := rt.lookup(strings.ToUpper(name) + ".")
		require.True(t, ok, "lookup %q", name)
		require.Equal(t, r.Backend, b)
	})
}

// BenchmarkRouterLookup measures the per-connection route lookup.
func BenchmarkRouterLookup(b *testing.B) {
	routes := []route{{"a.test", "127.0.0.1:1"}, {"b.test", "127.0.0.1:2"}}
	for i := range 20 {
		routes = append(routes, route{"*.svc" + string(rune('a'+i)) + ".example.test", "127.0.0.1:3"})
	}
	rt, err := newRouter(routes, "127.0.0.1:9")
	require.NoError(b, err)
	for _, name := range []string{"a.test", "x.svct.example.test", "unknown.test"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, ok := rt.lookup(name); !ok {
					b.Fatal("no route")
				}
			}
		})
	}
}
