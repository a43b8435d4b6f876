package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// forwarded returns the head the direct path sends upstream for the
// request head b: its request line and the lines it keeps, then idLine.
func forwarded(b []byte, h *reqHead, idLine string) string {
	out := string(b[:h.target.e]) + " HTTP/1.1\r\n"
	for _, l := range h.lines[:h.n] {
		if !l.drop {
			out += string(l.line.of(b))
		}
	}
	return out + idLine + "\r\n"
}

func TestHeadEnd(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"", 0},
		{"GET / HTTP/1.1\r\n", 0},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET", 27},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r", 0},
		{"GET / HTTP/1.1\nHost: x\r\n\r\n", -1},
		{"GET / HTTP/1.1\r\nHost: x\n\n", -1},
		{"\n", -1},
		{"\r\n", 2},
	} {
		require.Equal(t, tc.want, headEnd([]byte(tc.in)), "%q", tc.in)
	}
}

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		inbound bool
		want    string // the forwarded head; "" when the request goes to net/http
		cl      int64
		close   bool
	}{
		{name: "plain GET", in: "GET /a?b=c HTTP/1.1\r\nHost: app\r\nUser-Agent: t\r\n\r\n",
			want: "GET /a?b=c HTTP/1.1\r\nHost: app\r\nUser-Agent: t\r\n\r\n", cl: -1},
		{name: "hop-by-hop dropped, names kept as written", in: "GET / HTTP/1.1\r\nhost: app\r\nConnection: keep-alive, X-Hop\r\n" +
			"x-hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\nProxy-Authorization: basic\r\nTrailer: X\r\nX-Kept:  v \r\n\r\n",
			want: "GET / HTTP/1.1\r\nhost: app\r\nX-Kept:  v \r\n\r\n", cl: -1},
		{name: "forwarded headers kept", in: "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\nForwarded: for=x\r\n\r\n",
			want: "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\nForwarded: for=x\r\n\r\n", cl: -1},
		{name: "forwarded header named in Connection dropped", in: "GET / HTTP/1.1\r\nHost: a\r\nConnection: x-forwarded-for\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
			want: "GET / HTTP/1.1\r\nHost: a\r\n\r\n", cl: -1},
		{name: "close", in: "GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n", want: "GET / HTTP/1.1\r\nHost: a\r\n\r\n", cl: -1, close: true},
		{name: "client id kept outbound", in: "GET / HTTP/1.1\r\nHost: a\r\nL5d-Client-Id: x\r\n\r\n",
			want: "GET / HTTP/1.1\r\nHost: a\r\nL5d-Client-Id: x\r\n\r\n", cl: -1},
		{name: "client id dropped inbound, any case", inbound: true, in: "GET / HTTP/1.1\r\nHost: a\r\nL5D-CLIENT-ID: x\r\nl5d-client-id: y\r\n\r\n",
			want: "GET / HTTP/1.1\r\nHost: a\r\n\r\n", cl: -1},
		{name: "content length", in: "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n",
			want: "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n", cl: 12},
		{name: "any token method", in: "PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n", want: "PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n", cl: -1},
		{name: "empty value", in: "GET / HTTP/1.1\r\nHost: a\r\nX-E:\r\n\r\n", want: "GET / HTTP/1.1\r\nHost: a\r\nX-E:\r\n\r\n", cl: -1},
		// net/http's: it answers or serves these as before.
		{name: "HTTP/1.0", in: "GET / HTTP/1.0\r\nHost: a\r\n\r\n"},
		{name: "HTTP/2 preface", in: "PRI * HTTP/2.0\r\n\r\n"},
		{name: "CONNECT", in: "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"},
		{name: "absolute form", in: "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"},
		{name: "asterisk", in: "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"},
		{name: "fragment", in: "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n"},
		{name: "non-ASCII target", in: "GET /\xc3\xa4 HTTP/1.1\r\nHost: a\r\n\r\n"},
		{name: "no Host", in: "GET / HTTP/1.1\r\nX: y\r\n\r\n"},
		{name: "two Hosts", in: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"},
		{name: "bad Host", in: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"},
		{name: "chunked body", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{name: "upgrade", in: "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"},
		{name: "connection upgrade alone", in: "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n"},
		{name: "expect", in: "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"},
		{name: "te", in: "GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n"},
		{name: "two lengths", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"},
		{name: "signed length", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n"},
		{name: "huge length", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n"},
		{name: "no colon", in: "GET / HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n"},
		{name: "obs-fold", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"},
		{name: "space before colon", in: "GET / HTTP/1.1\r\nHost : a\r\n\r\n"},
		{name: "control in value", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n"},
		{name: "bad method", in: "G@T / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{name: "no target", in: "GET HTTP/1.1\r\nHost: a\r\n\r\n"},
		{name: "two spaces", in: "GET  / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{name: "lowercase version", in: "GET / http/1.1\r\nHost: a\r\n\r\n"},
		{name: "too many lines", in: "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: y\r\n", maxH1Headers) + "\r\n"},
		{name: "too many Connection lines", in: "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("Connection: x\r\n", 5) + "\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.in)
			require.Equal(t, len(b), headEnd(b), "a whole head")
			var h reqHead
			ok := parseRequest(b, &h, tc.inbound)
			if tc.want == "" {
				require.False(t, ok, "goes to net/http")
				return
			}
			require.True(t, ok)
			require.Equal(t, tc.want, forwarded(b, &h, ""))
			require.Equal(t, tc.cl, h.contentLength)
			require.Equal(t, tc.close, h.close)
		})
	}
}

func TestParseResponse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		ok      bool
		status  int
		cl      int64
		chunked bool
		close   bool
		kept    string // the lines kept
		grpc    string
	}{
		{name: "plain", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\n", ok: true, status: 200, cl: 5,
			kept: "Content-Length: 5\r\nX: y\r\n"},
		{name: "no reason", in: "HTTP/1.1 204\r\n\r\n", ok: true, status: 204, cl: -1},
		{name: "chunked wins over length", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: Chunked\r\n\r\n",
			ok: true, status: 200, cl: -1, chunked: true, kept: "Transfer-Encoding: Chunked\r\n"},
		{name: "connection close", in: "HTTP/1.1 200 OK\r\nConnection: close, X-H\r\nX-H: 1\r\nKeep-Alive: x\r\nContent-Length: 0\r\n\r\n",
			ok: true, status: 200, cl: 0, close: true, kept: "Content-Length: 0\r\n"},
		{name: "HTTP/1.0 closes", in: "HTTP/1.0 200 OK\r\n\r\n", ok: true, status: 200, cl: -1, close: true},
		{name: "HTTP/1.0 chunked ignored", in: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", ok: true, status: 200, cl: -1, close: true},
		{name: "HTTP/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", ok: true, status: 200, cl: 0,
			kept: "Content-Length: 0\r\n"},
		{name: "same length twice", in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", ok: true, status: 200, cl: 2,
			kept: "Content-Length: 2\r\nContent-Length: 2\r\n"},
		{name: "informational", in: "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", ok: true, status: 103, cl: -1, kept: "Link: </a>\r\n"},
		{name: "grpc status", in: "HTTP/1.1 200 OK\r\nGrpc-Status: 5\r\n\r\n", ok: true, status: 200, cl: -1, kept: "Grpc-Status: 5\r\n", grpc: "5"},
		{name: "two lengths", in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n"},
		{name: "gzip coding", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"},
		{name: "not HTTP", in: "SSH-2.0-x\r\n\r\n"},
		{name: "HTTP/2", in: "HTTP/2.0 200 OK\r\n\r\n"},
		{name: "short code", in: "HTTP/1.1 20 OK\r\n\r\n"},
		{name: "code below 100", in: "HTTP/1.1 099 X\r\n\r\n"},
		{name: "no space after code", in: "HTTP/1.1 200OK\r\n\r\n"},
		{name: "bad line", in: "HTTP/1.1 200 OK\r\nno colon\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.in)
			require.Equal(t, len(b), headEnd(b))
			var h respHead
			ok := parseResponse(b, &h)
			require.Equal(t, tc.ok, ok)
			if !ok {
				return
			}
			require.Equal(t, tc.status, h.status)
			require.Equal(t, tc.cl, h.contentLength)
			require.Equal(t, tc.chunked, h.chunked)
			require.Equal(t, tc.close, h.close)
			var kept string
			for _, l := range h.lines[:h.n] {
				if !l.drop {
					kept += string(l.line.of(b))
				}
			}
			require.Equal(t, tc.kept, kept)
			require.Equal(t, tc.grpc, string(h.grpcStatus.of(b)))
		})
	}
}

func TestChunkSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int64
		ok   bool
		name string
	}{
		{"0", 0, true, "last"}, {"1a", 26, true, "hex"}, {"FF", 255, true, "upper"}, {"10;ext=1", 16, true, "extension"},
		{"10 ;ext", 16, true, "space before extension"}, {"fffffffffffffff", 1<<60 - 1, true, "60 bits"},
		{"1000000000000000", 0, false, "too long"}, {"", 0, false, "empty"}, {"g", 0, false, "not hex"},
		{"1x", 0, false, "junk after"}, {";x", 0, false, "no size"}, {"1;\x00", 0, false, "control"},
	} {
		n, ok := chunkSize([]byte(tc.in))
		require.Equal(t, tc.ok, ok, tc.name)
		if ok {
			require.Equal(t, tc.n, n, tc.name)
		}
	}
}

// FuzzParseRequest: on any bytes, parseRequest does not panic, and a
// request it accepts is one net/http reads the same way: its method,
// target, Host, length and close; the head forwarded upstream is read by
// net/http to the same request, without the lines dropped.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x?y HTTP/1.1\r\nHost: a:80\r\nContent-Length: 3\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nL5d-Client-Id: spiffe://x/y\r\nKeep-Alive: 1\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"PUT /a%20b HTTP/1.1\r\nhost: [::1]:8080\r\nx:\t v \t\r\n\r\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, b []byte, inbound bool) {
		n := headEnd(b)
		if n <= 0 {
			return
		}
		b = b[:n]
		var h reqHead
		if !parseRequest(b, &h, inbound) {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("accepted a head net/http refuses (%v): %q", err, b)
		}
		if req.Method != string(h.method.of(b)) || req.RequestURI != string(h.target.of(b)) || req.Host != string(h.host.of(b)) {
			t.Fatalf("method/target/host %q %q %q, net/http %q %q %q", h.method.of(b), h.target.of(b), h.host.of(b), req.Method, req.RequestURI, req.Host)
		}
		if h.contentLength != req.ContentLength && !(h.contentLength == -1 && req.ContentLength == 0) {
			t.Fatalf("length %d, net/http %d", h.contentLength, req.ContentLength)
		}
		if h.close != req.Close {
			t.Fatalf("close %v, net/http %v: %q", h.close, req.Close, b)
		}
		fw := forwarded(b, &h, "")
		out, err := http.ReadRequest(bufio.NewReader(strings.NewReader(fw)))
		if err != nil {
			t.Fatalf("forwarded head refused (%v): %q", err, fw)
		}
		if out.Method != req.Method || out.RequestURI != req.RequestURI || out.Host != req.Host || out.ContentLength != req.ContentLength {
			t.Fatalf("forwarded %q reads differently", fw)
		}
		for k := range out.Header {
			if hopByHop(k) || (inbound && http.CanonicalHeaderKey(k) == clientIDKey) {
				t.Fatalf("forwarded %s: %q", k, fw)
			}
		}
	})
}

// hopByHop reports whether the canonical header name k is one the direct
// path never forwards in a request.
func hopByHop(k string) bool {
	for _, h := range hopHeaders {
		if k == h {
			return true
		}
	}
	return false
}

// FuzzParseResponse: on any bytes, parseResponse does not panic, and a head
// it accepts is one net/http's ReadResponse accepts with the same status,
// length and framing.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n",
		"HTTP/1.0 404 Not Found\r\nConnection: keep-alive\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
		"HTTP/1.1 204\r\nConnection: close, X\r\nX: 1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := headEnd(b)
		if n <= 0 {
			return
		}
		b = b[:n]
		var h respHead
		if !parseResponse(b, &h) {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
		if err != nil {
			if h.status >= 200 {
				t.Fatalf("accepted a head net/http refuses (%v): %q", err, b)
			}
			return
		}
		if resp.StatusCode != h.status {
			t.Fatalf("status %d, net/http %d", h.status, resp.StatusCode)
		}
		if bodiless(false, h.status) {
			return // no body, whatever the head says
		}
		if h.chunked != (len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked") {
			t.Fatalf("chunked %v, net/http %q", h.chunked, resp.TransferEncoding)
		}
		if !h.chunked && h.contentLength >= 0 && resp.ContentLength != h.contentLength {
			t.Fatalf("length %d, net/http %d", h.contentLength, resp.ContentLength)
		}
	})
}
