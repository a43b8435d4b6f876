package detect_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sniffsplice/sniff/detect"
)

// checkMonotonic fails when a prefix of in gets a final verdict that
// differs from a longer prefix's final verdict, and returns the verdict of
// the whole input. step bounds the work on long inputs.
func checkMonotonic(t *testing.T, m detect.Matcher, in []byte) detect.Verdict {
	var r detect.Result
	final := m.Match(in, &r)
	step := 1
	if len(in) > 256 {
		step = len(in) / 128 // bound the work: about 128 prefixes
	}
	decided := detect.NeedMore
	for i := 0; i <= len(in); i += step {
		var r detect.Result
		v := m.Match(in[:i], &r)
		if decided != detect.NeedMore && v != decided {
			t.Fatalf("%v at %d bytes after %v at a shorter prefix", v, i, decided)
		}
		if v != detect.NeedMore {
			decided = v
		}
	}
	if decided != detect.NeedMore && final != decided {
		t.Fatalf("whole input %v, prefix %v", final, decided)
	}
	return final
}

func FuzzHTTP1Matcher(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "CONNECT a:443 HTTP/1.1\r\n", "OPTIONS * HTTP/1.0\n",
		"PROPFIND /x HTTP/1.1\r\n", "GET  / HTTP/1.1\r\n", "PRI * HTTP/2.0\r\n", "get / http/1.1\r\n",
	} {
		f.Add([]byte(s))
	}
	m := detect.HTTP1Matcher()
	f.Fuzz(func(t *testing.T, in []byte) {
		v := checkMonotonic(t, m, in)
		// The matcher's table-driven and eight-bytes-at-a-time scans against
		// a plain reading of the rule.
		line := requestLine.Find(in)
		if (v == detect.Match) != (line != nil) {
			t.Fatalf("%v for %q; the rule says a request line is %q", v, in, line)
		}
		if v == detect.Match {
			var r detect.Result
			m.Match(in, &r)
			if r.HTTP.Method == "" || !bytes.HasPrefix(in, []byte(r.HTTP.Method+" ")) {
				t.Fatalf("method %q for %q", r.HTTP.Method, in)
			}
			if h, want := r.HTTP.Host(), hostHeader(in[len(line):]); h != want {
				t.Fatalf("host %q, want %q, for %q", h, want, in)
			}
		}
	})
}

// requestLine is HTTP1Matcher's rule written as a regular expression.
var requestLine = regexp.MustCompile(`^(GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH|QUERY|` +
	`PROPFIND|PROPPATCH|MKCOL|COPY|MOVE|LOCK|UNLOCK|ACL|BASELINE-CONTROL|BIND|CHECKIN|CHECKOUT|LABEL|` +
	`LINK|MERGE|MKACTIVITY|MKCALENDAR|MKREDIRECTREF|MKWORKSPACE|ORDERPATCH|REBIND|REPORT|SEARCH|UNBIND|` +
	`UNCHECKOUT|UNLINK|UPDATE|UPDATEREDIRECTREF|VERSION-CONTROL) [/*\[A-Za-z0-9][\x21-\x7e]* HTTP/1\.[0-9]\r?\n`)

// hostHeader is the Host value HTTP1Matcher keeps for the header bytes
// after the request line: the first complete "Host:" line (any case)
// before the blank line, without surrounding blanks, when at most 255
// bytes long.
func hostHeader(hdrs []byte) string {
	for {
		nl := bytes.IndexByte(hdrs, '\n')
		if nl < 0 {
			return ""
		}
		line := bytes.TrimSuffix(hdrs[:nl], []byte("\r"))
		hdrs = hdrs[nl+1:]
		if len(line) == 0 {
			return ""
		}
		if name, value, ok := bytes.Cut(line, []byte(":")); ok && strings.EqualFold(string(name), "host") {
			if value = bytes.Trim(value, " \t"); len(value) <= 255 {
				return string(value)
			}
			return ""
		}
	}
}

func FuzzHTTP2Matcher(f *testing.F) {
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"))
	f.Add([]byte("PRI * HTTP/1.1\r\n"))
	m := detect.HTTP2Matcher()
	f.Fuzz(func(t *testing.T, in []byte) {
		v := checkMonotonic(t, m, in)
		want := detect.NoMatch
		if bytes.HasPrefix(in, []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")) {
			want = detect.Match
		} else if bytes.HasPrefix([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), in) {
			want = detect.NeedMore
		}
		if v != want {
			t.Fatalf("%v, want %v", v, want)
		}
	})
}

func FuzzTLSClientHello(f *testing.F) {
	hello := goClientHello(f, "fuzz.example", []string{"h2", "http/1.1"})
	f.Add(hello)
	f.Add(refragment(hello, 64))
	f.Add(minimalHello(nil))
	f.Add(minimalHello(sniExt("a.example")))
	f.Add([]byte{0x16, 3, 1, 0, 4, 1, 0, 0, 0})
	var used detect.TLSInfo // a TLSInfo that already holds a hello
	if detect.ParseClientHello(hello, &used) != detect.Match {
		f.Fatal("Go's hello")
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		full := checkMonotonic(t, detect.TLSMatcher(), in)
		// The classification-only matcher: monotonic, and it accepts every
		// hello TLSMatcher accepts (their first bytes are checked alike).
		if rec := checkMonotonic(t, detect.TLSRecordMatcher(), in); full == detect.Match && rec != detect.Match {
			t.Fatalf("TLSRecordMatcher %v, TLSMatcher %v", rec, full)
		}
		// The in-place parser and the record-crossing one agree on every
		// input, verdict and extracted TLSInfo.
		var info, slow detect.TLSInfo
		v := detect.ParseClientHello(in, &info)
		if vs := detect.ParseHelloRecords(in, &slow); v != vs || info != slow {
			t.Fatalf("in place %v %+v, across records %v %+v", v, info, vs, slow)
		}
		if v != full {
			t.Fatal("ParseClientHello disagrees with TLSMatcher")
		}
		// Reusing a TLSInfo: untouched unless Match, then equal to a fresh one.
		reused := used
		if vr := detect.ParseClientHello(in, &reused); vr != v || v == detect.Match && reused != info || v != detect.Match && reused != used {
			t.Fatalf("reused TLSInfo: %v %+v", vr, reused)
		}
		// One record cut into smaller ones carries the same handshake bytes:
		// same verdict, same TLSInfo.
		if len(in) > 5 && in[0] == 0x16 && in[1] == 3 && in[2] <= 4 && int(in[3])<<8|int(in[4]) == len(in)-5 && len(in)-5 <= 1<<14 {
			for _, size := range []int{1, 7, 1 + int(in[len(in)-1])} {
				var got detect.TLSInfo
				if vr := detect.ParseClientHello(refragment(in, size), &got); vr != v || got != info {
					t.Fatalf("records of %d bytes: %v %+v, one record: %v %+v", size, vr, got, v, info)
				}
			}
		}
		if v == detect.Match {
			if sni := info.ServerName(); len(sni) > 255 {
				t.Fatalf("SNI of %d bytes", len(sni))
			}
			for _, p := range info.ALPN() {
				if p == "" || !info.HasALPN(p) {
					t.Fatalf("ALPN %q", p)
				}
			}
			if len(info.Versions()) > 16 {
				t.Fatal("too many versions")
			}
		}
	})
}

func FuzzPROXYMatcher(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00\x01\x1f\x90\x00\x50"))
	f.Fuzz(func(t *testing.T, in []byte) { checkMonotonic(t, detect.PROXYMatcher(), in) })
}

func FuzzSSHMatcher(f *testing.F) {
	f.Add([]byte("SSH-2.0-OpenSSH_9.6\r\n"))
	f.Add([]byte("SSH-1.99-x\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		v := checkMonotonic(t, detect.SSHMatcher(), in)
		if v == detect.Match && !bytes.HasPrefix(in, []byte("SSH-2.0-")) && !bytes.HasPrefix(in, []byte("SSH-1.99-")) {
			t.Fatalf("matched %q", in)
		}
	})
}

func FuzzPostgreSQLMatcher(f *testing.F) {
	f.Add([]byte{0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f})
	f.Add(pgStartup("user", "alice", "database", "db"))
	f.Add([]byte(pgMsg(16, 80877102, "\x00\x00\x00\x01\x00\x00\x00\x02")))
	f.Fuzz(func(t *testing.T, in []byte) { checkMonotonic(t, detect.PostgreSQLMatcher(), in) })
}

// FuzzDetector feeds the input to the whole Detector (every built-in
// matcher, gRPC passive refinement) over net.Pipe in fragments chosen by
// cuts, and checks that the bytes read back equal the input and that the
// result equals the one for the unfragmented input.
func FuzzDetector(f *testing.F) {
	hello := goClientHello(f, "fuzz.example", []string{"h2"})
	for _, s := range [][]byte{
		[]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), hello, refragment(hello, 300),
		h2Request(f, "application/grpc", true), h2Request(f, "text/plain", false),
		[]byte("SSH-2.0-x\r\n"), pgStartup("user", "u"), []byte("PROXY UNKNOWN\r\n"), {0xff, 1, 2},
	} {
		f.Add(s, []byte{1, 7, 3, 200})
	}
	d := &detect.Detector{Matchers: allMatchers(), GRPC: detect.GRPCPassive, GRPCWait: time.Minute}
	run := func(t *testing.T, in, cuts []byte) detect.Result {
		c, s := net.Pipe()
		defer c.Close()
		go func() {
			defer c.Close()
			rest := in
			for i := 0; len(rest) > 0; i++ {
				k := len(rest)
				if len(cuts) > 0 {
					k = min(k, 1+int(cuts[i%len(cuts)]))
				}
				if _, err := c.Write(rest[:k]); err != nil {
					return
				}
				rest = rest[k:]
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, conn, err := d.Detect(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		got, err := io.ReadAll(bounded(conn))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, in) {
			t.Fatalf("read back %d bytes, sent %d", len(got), len(in))
		}
		return res
	}
	f.Fuzz(func(t *testing.T, in, cuts []byte) {
		if len(in) > 32<<10 {
			return
		}
		whole := run(t, in, nil)
		split := run(t, in, cuts)
		if whole.Protocol != split.Protocol || whole.Reason != split.Reason {
			t.Fatalf("whole %v/%v, fragmented %v/%v", whole.Protocol, whole.Reason, split.Protocol, split.Reason)
		}
	})
}
