package detect_test

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/detect"
)

type matcherCase struct {
	name string
	in   string
	want detect.Verdict
}

// checkMatcher runs the table and checks that every proper prefix of an
// input that matches (or fails) gives NeedMore or the same final verdict
// (monotonicity).
func checkMatcher(t *testing.T, m detect.Matcher, cases []matcherCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r detect.Result
			got := m.Match([]byte(tc.in), &r)
			assert.Equal(t, tc.want, got, "%q", tc.in)
			for i := 0; i < len(tc.in); i++ {
				var r detect.Result
				v := m.Match([]byte(tc.in[:i]), &r)
				if v != detect.NeedMore {
					assert.Equal(t, tc.want, v, "prefix %q decided %v before the whole input", tc.in[:i], v)
				}
			}
		})
	}
}

func TestHTTP2Matcher(t *testing.T) {
	m := detect.HTTP2Matcher()
	assert.Equal(t, detect.HTTP2, m.Protocol())
	checkMatcher(t, m, []matcherCase{
		{"preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", detect.Match},
		{"preface+frames", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00", detect.Match},
		{"partial", "PRI * HTTP/2.0\r\n\r\nSM", detect.NeedMore},
		{"empty", "", detect.NeedMore},
		{"wrong-tail", "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", detect.NoMatch},
		{"http1", "GET / HTTP/1.1\r\n", detect.NoMatch},
		{"lowercase", "pri * HTTP/2.0\r\n\r\nSM\r\n\r\n", detect.NoMatch},
	})
}

func TestHTTP1Matcher(t *testing.T) {
	m := detect.HTTP1Matcher()
	assert.Equal(t, detect.HTTP1, m.Protocol())
	cases := []matcherCase{
		{"origin-form", "GET /index.html?q=1 HTTP/1.1\r\nHost: a\r\n\r\n", detect.Match},
		{"http10-lf", "GET / HTTP/1.0\n\n", detect.Match},
		{"absolute-form", "GET http://example.com/x HTTP/1.1\r\n", detect.Match},
		{"authority-form", "CONNECT example.com:443 HTTP/1.1\r\n", detect.Match},
		{"authority-ipv6", "CONNECT [::1]:443 HTTP/1.1\r\n", detect.Match},
		{"asterisk", "OPTIONS * HTTP/1.1\r\n", detect.Match},
		{"request-line-only-partial", "GET / HTTP/1.1", detect.NeedMore},
		{"method-only", "DELETE", detect.NeedMore},
		{"method-prefix", "PROPF", detect.NeedMore},
		{"pri", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", detect.NoMatch},
		{"fourteen-letters", "ABCDEFGHIJKLMN / HTTP/1.1\r\n", detect.NoMatch},
		{"unknown-method", "FETCH / HTTP/1.1\r\n", detect.NoMatch},
		{"method-extended", "GETS / HTTP/1.1\r\n", detect.NoMatch},
		{"lowercase", "get / HTTP/1.1\r\n", detect.NoMatch},
		{"double-space", "GET  / HTTP/1.1\r\n", detect.NoMatch},
		{"bad-target-start", "GET ./x HTTP/1.1\r\n", detect.NoMatch},
		{"control-in-target", "GET /a\x01b HTTP/1.1\r\n", detect.NoMatch},
		{"utf8-in-target", "GET /\xc3\xa9 HTTP/1.1\r\n", detect.NoMatch},
		{"http2-version", "GET / HTTP/2.0\r\n", detect.NoMatch},
		{"no-version-digit", "GET / HTTP/1.x\r\n", detect.NoMatch},
		{"cr-without-lf", "GET / HTTP/1.1\rX", detect.NoMatch},
		{"trailing-garbage", "GET / HTTP/1.1 \r\n", detect.NoMatch},
		{"tls", "\x16\x03\x01\x02\x00\x01", detect.NoMatch},
		{"binary", "\x00\x00\x00\x08", detect.NoMatch},
	}
	for _, meth := range []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
		"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH", "MKCALENDAR",
		"VERSION-CONTROL", "UPDATEREDIRECTREF", "QUERY"} {
		cases = append(cases, matcherCase{"method-" + meth, meth + " /r HTTP/1.1\r\n", detect.Match})
	}
	checkMatcher(t, m, cases)
}

func TestHTTP1MatcherInfo(t *testing.T) {
	m := detect.HTTP1Matcher()
	cases := []struct{ in, method, host string }{
		{"PATCH /x HTTP/1.1\r\nHost: api.example.com\r\n\r\n", "PATCH", "api.example.com"},
		{"GET / HTTP/1.1\r\nAccept: */*\r\nhOsT:   spaced.example:8080  \r\n\r\n", "GET", "spaced.example:8080"},
		{"GET / HTTP/1.1\r\nAccept: */*\r\n\r\nHost: body.example\r\n", "GET", ""}, // after the headers
		{"GET / HTTP/1.1\r\nHost: not-yet-complete", "GET", ""},
		{"GET / HTTP/1.1\r\nHost: " + strings.Repeat("h", 256) + "\r\n\r\n", "GET", ""},
		{"MKCOL /d HTTP/1.0\n", "MKCOL", ""},
	}
	for _, tc := range cases {
		var r detect.Result
		require.Equal(t, detect.Match, m.Match([]byte(tc.in), &r), "%q", tc.in)
		assert.Equal(t, tc.method, r.HTTP.Method)
		assert.Equal(t, tc.host, r.HTTP.Host())
	}
}

func TestSSHMatcher(t *testing.T) {
	m := detect.SSHMatcher()
	assert.Equal(t, detect.SSH, m.Protocol())
	checkMatcher(t, m, []matcherCase{
		{"openssh", "SSH-2.0-OpenSSH_9.6\r\n", detect.Match},
		{"v1.99", "SSH-1.99-Old\r\n", detect.Match},
		{"partial", "SSH-2.", detect.NeedMore},
		{"v1", "SSH-1.5-Ancient\r\n", detect.NoMatch},
		{"http", "GET / HTTP/1.1\r\n", detect.NoMatch},
		{"lowercase", "ssh-2.0-x", detect.NoMatch},
	})
}

func pgMsg(length, code uint32, body string) string {
	b := binary.BigEndian.AppendUint32(nil, length)
	b = binary.BigEndian.AppendUint32(b, code)
	return string(b) + body
}

func TestPostgreSQLMatcher(t *testing.T) {
	m := detect.PostgreSQLMatcher()
	assert.Equal(t, detect.PostgreSQL, m.Protocol())
	startup := string(pgStartup("user", "alice", "database", "app"))
	checkMatcher(t, m, []matcherCase{
		{"ssl", pgMsg(8, 80877103, ""), detect.Match},
		{"gssenc", pgMsg(8, 80877104, ""), detect.Match},
		{"cancel", pgMsg(16, 80877102, "\x00\x00\x00\x01\x00\x00\x00\x02"), detect.Match},
		{"startup", startup, detect.Match},
		{"startup-3.2", pgMsg(uint32(8+len("user\x00bob\x00\x00")), 3<<16|2, "user\x00bob\x00\x00"), detect.Match},
		{"startup-partial", startup[:20], detect.NeedMore},
		{"ssl-wrong-length", pgMsg(12, 80877103, "\x00\x00\x00\x00"), detect.NoMatch},
		{"startup-no-user", string(pgStartup("database", "app")), detect.NoMatch},
		{"startup-key-without-value", pgMsg(uint32(8+len("user\x00")+1), 3<<16, "user\x00\x00"), detect.NoMatch},
		{"startup-not-terminated", pgMsg(uint32(8+len("user\x00bob\x00x")), 3<<16, "user\x00bob\x00x"), detect.NoMatch},
		{"protocol-2", pgMsg(uint32(8+len("user\x00bob\x00\x00")), 2<<16, "user\x00bob\x00\x00"), detect.NoMatch},
		{"huge-length", pgMsg(1<<20, 3<<16, ""), detect.NoMatch},
		{"http", "GET / HTTP/1.1\r\n", detect.NoMatch},
	})
}

func TestPROXYMatcher(t *testing.T) {
	m := detect.PROXYMatcher()
	assert.Equal(t, detect.PROXY, m.Protocol())
	v2 := "\r\n\r\n\x00\r\nQUIT\n"
	checkMatcher(t, m, []matcherCase{
		{"v1-tcp4", "PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\nGET /", detect.Match},
		{"v1-tcp6", "PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n", detect.Match},
		{"v1-unknown", "PROXY UNKNOWN\r\n", detect.Match},
		{"v1-partial", "PROXY TCP4 192.0.2.1 ", detect.NeedMore},
		{"v1-bad-family", "PROXY UDP4 1.1.1.1 2.2.2.2 1 2\r\n", detect.NoMatch},
		{"v1-three-fields", "PROXY TCP4 1.1.1.1 2.2.2.2 1\r\n", detect.NoMatch},
		{"v1-bad-char", "PROXY TCP4 1.1.1.1 2.2.2.2 1 x2\r\n", detect.NoMatch},
		{"v1-control", "PROXY TCP4 \x01", detect.NoMatch},
		{"v1-too-long", "PROXY UNKNOWN " + strings.Repeat("a", 120), detect.NoMatch},
		{"v2-inet", v2 + "\x21\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00\x01\x1f\x90\x00\x50", detect.Match},
		{"v2-local", v2 + "\x20\x00\x00\x00", detect.Match},
		{"v2-partial-sig", v2[:7], detect.NeedMore},
		{"v2-version-1", v2 + "\x11\x11\x00\x0c", detect.NoMatch},
		{"v2-bad-command", v2 + "\x22\x11\x00\x0c", detect.NoMatch},
		{"v2-bad-family", v2 + "\x21\x41\x00\x0c", detect.NoMatch},
		{"v2-short-addresses", v2 + "\x21\x21\x00\x0c", detect.NoMatch},
		{"http", "GET / HTTP/1.1\r\n", detect.NoMatch},
	})
}

func TestTLSMatcherGoClientHello(t *testing.T) {
	hello := goClientHello(t, "api.example.test", []string{"h2", "http/1.1"})
	assert.Greater(t, len(hello), 1200, "Go's default hello carries a post-quantum key share")
	for name, in := range map[string][]byte{
		"one-record":         hello,
		"200-byte-records":   refragment(hello, 200),
		"1-byte-records":     refragment(hello, 1),
		"with-trailing-data": append(append([]byte(nil), hello...), "\x14\x03\x03\x00\x01\x01"...),
	} {
		t.Run(name, func(t *testing.T) {
			var r detect.Result
			require.Equal(t, detect.Match, detect.TLSMatcher().Match(in, &r))
			assert.Equal(t, "api.example.test", r.TLS.ServerName())
			assert.Equal(t, []string{"h2", "http/1.1"}, r.TLS.ALPN())
			assert.True(t, r.TLS.HasALPN("h2"))
			assert.False(t, r.TLS.HasALPN("h3"))
			assert.Equal(t, []uint16{tls.VersionTLS13, tls.VersionTLS12}, r.TLS.Versions())
			assert.True(t, r.TLS.SupportsVersion(tls.VersionTLS13))
			assert.Equal(t, uint16(tls.VersionTLS12), r.TLS.LegacyVersion)
			// Every prefix is NeedMore.
			for i := 0; i < len(in) && i < len(hello); i++ {
				var r detect.Result
				if v := detect.TLSMatcher().Match(in[:i], &r); v != detect.NeedMore {
					t.Fatalf("prefix of %d bytes: %v", i, v)
				}
			}
		})
	}
}

func TestTLSMatcherTLS12Only(t *testing.T) {
	c, s := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tls.Client(c, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}).Handshake()
	}()
	buf := make([]byte, 0, 4096)
	var r detect.Result
	for {
		n, err := s.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if detect.TLSMatcher().Match(buf, &r) == detect.Match {
			break
		}
		require.NoError(t, err)
	}
	s.Close()
	c.Close()
	recv(t, done, "done")
	assert.Equal(t, "", r.TLS.ServerName(), "no SNI without ServerName")
	assert.Nil(t, r.TLS.ALPN())
	assert.Equal(t, []uint16{tls.VersionTLS12}, r.TLS.Versions())
}

// minimalHello builds a ClientHello with the given extensions block (nil:
// none) in one record.
func minimalHello(ext []byte) []byte {
	body := []byte{3, 3}
	body = append(body, make([]byte, 32)...) // random
	body = append(body, 0)                   // session id
	body = append(body, 0, 2, 0x13, 0x01)    // one cipher suite
	body = append(body, 1, 0)                // null compression
	if ext != nil {
		body = binary.BigEndian.AppendUint16(body, uint16(len(ext)))
		body = append(body, ext...)
	}
	hs := append([]byte{1, 0, byte(len(body) >> 8), byte(len(body))}, body...)
	rec := []byte{0x16, 3, 1, byte(len(hs) >> 8), byte(len(hs))}
	return append(rec, hs...)
}

func ext(typ uint16, data []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

func sniExt(name string) []byte {
	entry := append([]byte{0, byte(len(name) >> 8), byte(len(name))}, name...)
	return ext(0, append([]byte{byte(len(entry) >> 8), byte(len(entry))}, entry...))
}

func TestTLSMatcherHandBuilt(t *testing.T) {
	grease := ext(43, []byte{6, 0x0a, 0x0a, 3, 4, 3, 3})
	alpnBad := ext(16, []byte{0, 3, 0, 'h', '2'}) // zero-length name
	cases := []struct {
		name string
		in   []byte
		want detect.Verdict
		sni  string
	}{
		{"no-extensions", minimalHello(nil), detect.Match, ""},
		{"sni", minimalHello(sniExt("a.example")), detect.Match, "a.example"},
		{"grease-versions", minimalHello(grease), detect.Match, ""},
		{"sni-too-long-kept-out", minimalHello(sniExt(strings.Repeat("a", 300))), detect.Match, ""},
		{"duplicate-sni", minimalHello(append(sniExt("a"), sniExt("b")...)), detect.NoMatch, ""},
		{"alpn-empty-name", minimalHello(alpnBad), detect.NoMatch, ""},
		{"ext-length-overflows", minimalHello([]byte{0, 0, 0, 200, 0}), detect.NoMatch, ""},
		{"ext-block-short", minimalHello([]byte{0, 0}), detect.NoMatch, ""},
		{"truncated", minimalHello(sniExt("a.example"))[:40], detect.NeedMore, ""},
		{"not-handshake", []byte{0x17, 3, 3, 0, 5, 1}, detect.NoMatch, ""},
		{"server-hello", []byte{0x16, 3, 3, 0, 5, 2}, detect.NoMatch, ""},
		{"ssl2-record-version", []byte{0x16, 2, 0}, detect.NoMatch, ""},
		{"record-too-long", []byte{0x16, 3, 1, 0x40, 0x01}, detect.NoMatch, ""},
		{"record-empty", []byte{0x16, 3, 1, 0, 0}, detect.NoMatch, ""},
		{"http", []byte("GET / HTTP/1.1\r\n"), detect.NoMatch, ""},
	}
	// A record of another type in the middle of the hello.
	h := refragment(minimalHello(sniExt("a.example")), 20)
	h[25] = 0x17
	cases = append(cases, struct {
		name string
		in   []byte
		want detect.Verdict
		sni  string
	}{"alert-between-fragments", h, detect.NoMatch, ""})
	// A session id longer than 32 bytes.
	bad := minimalHello(nil)
	bad[5+4+2+32] = 33
	cases = append(cases, struct {
		name string
		in   []byte
		want detect.Verdict
		sni  string
	}{"session-id-33", bad, detect.NoMatch, ""})

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r detect.Result
			got := detect.TLSMatcher().Match(tc.in, &r)
			require.Equal(t, tc.want, got)
			if got == detect.Match {
				assert.Equal(t, tc.sni, r.TLS.ServerName())
			}
			if tc.name == "grease-versions" {
				assert.Equal(t, []uint16{0x0304, 0x0303}, r.TLS.Versions())
			}
		})
	}
}

func TestTLSRecordMatcher(t *testing.T) {
	m := detect.TLSRecordMatcher()
	assert.Equal(t, detect.TLS, m.Protocol())
	hello := goClientHello(t, "api.example.test", []string{"h2"})
	badSession := minimalHello(nil)
	badSession[5+4+2+32] = 33 // malformed body: TLSMatcher refuses it
	shortHello := minimalHello(nil)
	shortHello[8] = 37 // handshake length below the smallest hello (38)
	ssl3Legacy := minimalHello(nil)
	ssl3Legacy[9] = 2 // legacy_version 2.x
	checkMatcher(t, m, []matcherCase{
		{"go-hello", string(hello), detect.Match},
		{"go-hello-header-only", string(hello[:11]), detect.Match},
		{"minimal-hello", string(minimalHello(nil)), detect.Match},
		{"1-byte-records", string(refragment(hello, 1)[:80]), detect.Match},
		{"3-byte-records", string(refragment(hello, 3)[:40]), detect.Match},
		{"malformed-body-still-tls", string(badSession), detect.Match},
		{"partial", string(hello[:10]), detect.NeedMore},
		{"partial-1-byte-records", string(refragment(hello, 1)[:30]), detect.NeedMore},
		{"hello-too-short", string(shortHello), detect.NoMatch},
		{"legacy-version-2", string(ssl3Legacy), detect.NoMatch},
		{"not-handshake", "\x17\x03\x03\x00\x05\x01", detect.NoMatch},
		{"server-hello", "\x16\x03\x03\x00\x05\x02", detect.NoMatch},
		{"ssl2-record-version", "\x16\x02\x00", detect.NoMatch},
		{"record-too-long", "\x16\x03\x01\x40\x01", detect.NoMatch},
		{"record-empty", "\x16\x03\x01\x00\x00", detect.NoMatch},
		{"alert-between-fragments", "\x16\x03\x01\x00\x01\x01\x15\x03\x01\x00\x01\x00", detect.NoMatch},
		{"http", "GET / HTTP/1.1\r\n", detect.NoMatch},
		{"empty", "", detect.NeedMore},
	})
	var r detect.Result
	require.Equal(t, detect.Match, m.Match(hello, &r))
	assert.Equal(t, detect.TLSInfo{}, r.TLS, "the record matcher fills nothing in Result.TLS")
}

// TestParseClientHelloPaths checks that the in-place parser (a hello in
// one record) and the record-crossing one decide alike and extract the
// same TLSInfo, on whole hellos, on every prefix and on the same hellos
// cut into records of several sizes.
func TestParseClientHelloPaths(t *testing.T) {
	alpnLong := []byte{0, 0}
	for _, name := range []string{strings.Repeat("a", 200), "h2", strings.Repeat("b", 60), "http/1.1"} {
		alpnLong = append(alpnLong, byte(len(name)))
		alpnLong = append(alpnLong, name...)
	}
	binary.BigEndian.PutUint16(alpnLong, uint16(len(alpnLong)-2))
	manyVersions := []byte{60} // 10 GREASE values and 20 versions
	for v := range 10 {
		manyVersions = binary.BigEndian.AppendUint16(manyVersions, uint16(0x0a0a+v*0x1010))
		manyVersions = binary.BigEndian.AppendUint16(manyVersions, uint16(0x0300+2*v))
		manyVersions = binary.BigEndian.AppendUint16(manyVersions, uint16(0x0301+2*v))
	}
	hellos := map[string][]byte{
		"go":            goClientHello(t, "api.example.test", []string{"h2", "http/1.1"}),
		"go-no-sni":     goClientHello(t, "", nil),
		"minimal":       minimalHello(nil),
		"sni":           minimalHello(sniExt("a.example")),
		"two-sni-names": minimalHello(ext(0, []byte{0, 12, 1, 0, 3, 'x', '.', 'y', 0, 0, 3, 'a', '.', 'b'})),
		"alpn-over-256": minimalHello(ext(16, alpnLong)),
		"versions-30":   minimalHello(ext(43, manyVersions)),
		"sni-too-long":  minimalHello(sniExt(strings.Repeat("a", 300))),
		"empty-ext":     minimalHello([]byte{}),
		"bad-ext-len":   minimalHello([]byte{0, 0, 0, 200, 0}),
	}
	for name, hello := range hellos {
		t.Run(name, func(t *testing.T) {
			for i := 0; i <= len(hello); i++ {
				var fast, slow detect.TLSInfo
				vf := detect.ParseClientHello(hello[:i], &fast)
				vs := detect.ParseHelloRecords(hello[:i], &slow)
				require.Equal(t, vs, vf, "prefix of %d bytes", i)
				require.Equal(t, slow, fast, "prefix of %d bytes", i)
			}
			var want detect.TLSInfo
			wantV := detect.ParseClientHello(hello, &want)
			for _, size := range []int{1, 2, 5, 64, 1000} {
				var got detect.TLSInfo
				assert.Equal(t, wantV, detect.ParseClientHello(refragment(hello, size), &got), "records of %d bytes", size)
				assert.Equal(t, want, got, "records of %d bytes", size)
			}
		})
	}
	var info detect.TLSInfo
	require.Equal(t, detect.Match, detect.ParseClientHello(hellos["two-sni-names"], &info))
	assert.Equal(t, "a.b", info.ServerName(), "the first host_name entry is kept")
	require.Equal(t, detect.Match, detect.ParseClientHello(hellos["alpn-over-256"], &info))
	assert.Equal(t, []string{strings.Repeat("a", 200), "h2", "http/1.1"}, info.ALPN(), "names that fit in 256 bytes are kept")
	require.Equal(t, detect.Match, detect.ParseClientHello(hellos["versions-30"], &info))
	assert.Equal(t, []uint16{0x0300, 0x0301, 0x0302, 0x0303, 0x0304, 0x0305, 0x0306, 0x0307, 0x0308, 0x0309, 0x030a,
		0x030b, 0x030c, 0x030d, 0x030e, 0x030f}, info.Versions(), "GREASE left out, the first 16 kept")
	// A parse reusing info leaves nothing of the previous hello.
	require.Equal(t, detect.Match, detect.ParseClientHello(hellos["minimal"], &info))
	assert.Equal(t, detect.TLSInfo{LegacyVersion: 0x0303}, info)
}

func TestReasonVerdictModeStrings(t *testing.T) {
	want := map[detect.Reason]string{
		detect.ReasonMatched: "matched", detect.ReasonNoMatch: "no_match", detect.ReasonTimeout: "timeout",
		detect.ReasonClosed: "closed", detect.ReasonLimit: "limit", detect.ReasonServerFirst: "server_first",
		detect.Reason(200): "unknown",
	}
	for r, s := range want {
		assert.Equal(t, s, r.String())
	}
	assert.Equal(t, "need_more", detect.NeedMore.String())
	assert.Equal(t, "match", detect.Match.String())
	assert.Equal(t, "no_match", detect.NoMatch.String())
	assert.Equal(t, "active", detect.GRPCActive.String())
	assert.Equal(t, "passive", detect.GRPCPassive.String())
	assert.Equal(t, "off", detect.GRPCOff.String())
	assert.Equal(t, "HTTP/1", detect.HTTP1.String())
}
