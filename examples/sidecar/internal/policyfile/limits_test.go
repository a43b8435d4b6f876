package policyfile

// Limits of the policy-file parser: every line form at its edges (quotes,
// comments, separators, empty values), durations and uids at 0 and 1, and
// duplicate keys. scripts/mutate runs these (TestLimits*) for each planted
// bug.

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLimitsParse(t *testing.T) {
	defer boundTime(t)()
	type want struct {
		opaque  string
		has     bool
		timeout time.Duration
		uid     int
		ignored int
	}
	ok := func(w want) *want { return &w }
	for _, tc := range []struct {
		in   string
		want *want // nil: ErrSyntax
	}{
		{"", ok(want{uid: -1})},
		{"\n\n  \n# c\nannotations:\n", ok(want{uid: -1})},
		{"config.linkerd.io/opaque-ports: 80", ok(want{opaque: "80", has: true, uid: -1})},
		{"config.linkerd.io/opaque-ports=80", ok(want{opaque: "80", has: true, uid: -1})},
		{"config.linkerd.io/opaque-ports:", ok(want{has: true, uid: -1})},
		{`config.linkerd.io/opaque-ports: ""`, ok(want{has: true, uid: -1})},
		{`config.linkerd.io/opaque-ports: ''`, ok(want{has: true, uid: -1})},
		{`config.linkerd.io/opaque-ports: "80" # c`, ok(want{opaque: "80", has: true, uid: -1})},
		{`config.linkerd.io/opaque-ports: "80"# c`, ok(want{opaque: "80", has: true, uid: -1})},
		{`config.linkerd.io/opaque-ports: "80" x`, nil},
		{`config.linkerd.io/opaque-ports: "80`, nil},
		{`config.linkerd.io/opaque-ports: '80`, nil},
		{`config.linkerd.io/opaque-ports: '80' `, ok(want{opaque: "80", has: true, uid: -1})},
		{`config.linkerd.io/opaque-ports: "\q"`, nil},
		{"config.linkerd.io/opaque-ports: 80 # c", ok(want{opaque: "80", has: true, uid: -1})},
		{"config.linkerd.io/opaque-ports: 80# c", nil},
		{"config.linkerd.io/opaque-ports: 0", nil},
		{"config.linkerd.io/skip-inbound-ports: 1", ok(want{uid: -1})},
		{":80", nil},
		{"=80", nil},
		{"x", nil},
		{"a b: 1", nil},
		{`a"b: 1`, nil},
		{"a'b: 1", nil},
		{"a\tb: 1", nil},
		{"other.io/x: anything at all", ok(want{uid: -1})},
		{`other.io/x: "a #b"`, ok(want{uid: -1})}, // " #" inside quotes is no comment
		{`other.io/x: 'a #b'`, ok(want{uid: -1})},
		{`other.io/x: "a #b`, nil},
		{"config.linkerd.io/unknown: 1", ok(want{uid: -1, ignored: 1})},
		{"config.linkerd.io/enable-external-profiles: true", ok(want{uid: -1, ignored: 1})},
		{"config.linkerd.io/enable-external-profiles: maybe", nil},
		{"config.linkerd.io/proxy-detect-timeout: 1ns", ok(want{uid: -1, timeout: 1})},
		{"config.linkerd.io/proxy-detect-timeout: 0s", nil},
		{"config.linkerd.io/proxy-detect-timeout: -1s", nil},
		{"config.linkerd.io/proxy-detect-timeout: 10", nil},
		{"config.linkerd.io/proxy-uid: 0", ok(want{uid: 0})},
		{"config.linkerd.io/proxy-uid: 1", ok(want{uid: 1})},
		{"config.linkerd.io/proxy-uid: -1", nil},
		{"config.linkerd.io/proxy-uid: x", nil},
		{"a: 1\na: 2", nil},
		{"a: 1\nb: 2\na=3", nil},
	} {
		pf, err := Parse(strings.NewReader(tc.in))
		if tc.want == nil {
			if !errors.Is(err, ErrSyntax) || strings.ContainsRune(err.Error(), '\n') {
				t.Errorf("%q: %v, want one-line ErrSyntax", tc.in, err)
			}
			continue
		}
		w := *tc.want
		if err != nil || pf.OpaquePorts != w.opaque || pf.HasOpaque != w.has || pf.DetectTimeout != w.timeout ||
			pf.ProxyUID != w.uid || len(pf.Ignored) != w.ignored || pf.Layer.DetectTimeout != w.timeout ||
			(pf.Layer.OpaquePorts != nil) != w.has {
			t.Errorf("%q: %+v %v, want %+v", tc.in, pf, err, w)
		}
	}
	// The line number of an error is the line's, blank and comment lines
	// counted.
	_, err := Parse(strings.NewReader("# one\n\nconfig.linkerd.io/proxy-uid: 1\nbad line\n"))
	if err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("line number: %v", err)
	}
	_, err = Parse(strings.NewReader("a: 1\n\nb: 1\na: 2\n"))
	if err == nil || !strings.Contains(err.Error(), "line 4") || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("duplicate: %v", err)
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
