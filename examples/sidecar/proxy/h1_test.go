package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/websocket"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/examples/sidecar/internal/testserver"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/opaque"
)

// h1Pair starts sidecars B and A in front of dst, with metrics and events,
// and returns A's listener for dst and both proxies.
func h1Pair(tb testing.TB, dst netip.AddrPort, evA, evB *events, configA ...func(*Proxy)) (addr string, pA, pB *Proxy) {
	tb.Helper()
	ca := mtlstest.MustNew("h1.test")
	srcA, srcB := ca.Source("/sa/client"), ca.Source("/sa/server")
	pB = &Proxy{TLS: &mtls.Config{SVID: srcB, Bundle: srcB}, Metrics: metrics.New(metrics.Config{}), OnEvent: evB.add}
	sB, err := Start(context.Background(), pB, Listeners{Inbound: "127.0.0.1:0"})
	require.NoError(tb, err)
	tb.Cleanup(func() { sB.Close() })
	pA = &Proxy{
		TLS: &mtls.Config{SVID: srcA, Bundle: srcA}, Metrics: metrics.New(metrics.Config{}), OnEvent: evA.add,
		Peers: func(netip.AddrPort) (Peer, error) {
			return Peer{Addr: sB.InboundAddr.String(), ID: ca.ID("/sa/server")}, nil
		},
	}
	for _, f := range configA {
		f(pA)
	}
	sA, err := Start(context.Background(), pA, Listeners{Forwards: []Forward{{Listen: "127.0.0.1:0", Dst: dst}}})
	require.NoError(tb, err)
	tb.Cleanup(func() { sA.Close() })
	return sA.ForwardAddrs[0].String(), pA, pB
}

// noEarlyRace gives A's clients a race grace no client of a loaded test machine overruns
// between its connect and its first write: a test that counts B's connections or A's
// first-bytes outcomes must not see a race's early connection to B.
func noEarlyRace(p *Proxy) { p.Race = &detect.RacePolicy{Grace: time.Second} }

// h1Backend is an application for the direct path's tests.
func h1Backend(tb testing.TB) netip.AddrPort {
	tb.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		var names []string
		for k := range r.Header {
			names = append(names, k)
		}
		sum := sha256.Sum256(body)
		fmt.Fprintf(w, "%s %s host=%s len=%d sum=%x id=%q hop=%q kept=%q", r.Method, r.RequestURI, r.Host, len(body), sum[:4],
			r.Header.Values(ClientIDHeader), r.Header.Get("X-Hop")+r.Header.Get("Keep-Alive"), r.Header.Get("X-Kept"))
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		for i := range 3 {
			fmt.Fprintf(w, "part %d;", i)
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Sum", "3 parts")
	})
	mux.HandleFunc("/eof", func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 200 OK\r\nX-Framing: none\r\n\r\nuntil the end")
		brw.Flush()
	})
	mux.HandleFunc("/early", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "after hints")
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(1<<20))
		w.Write([]byte(strings.Repeat("b", 1<<20)))
	})
	mux.HandleFunc("/hop", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "dropped")
		w.Header().Set("Keep-Alive", "timeout=1")
		w.Header().Set("X-Resp-Kept", "yes")
	})
	mux.Handle("/ws", websocket.Handler(func(ws *websocket.Conn) { io.Copy(ws, ws) }))
	var protos http.Protocols
	protos.SetHTTP1(true)
	return httpBackend(tb, &http.Server{Handler: mux, Protocols: &protos})
}

// h1Client is a raw keep-alive HTTP/1.1 client connection that counts its
// bytes.
type h1Client struct {
	t             *testing.T
	c             net.Conn
	br            *bufio.Reader
	sent, recvd   int64
	countingRecvd *countReader
}

type countReader struct {
	r io.Reader
	n *int64
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	*c.n += int64(n)
	return n, err
}

func dialH1(t *testing.T, addr string) *h1Client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	hc := &h1Client{t: t, c: c}
	hc.br = bufio.NewReader(&countReader{c, &hc.recvd})
	return hc
}

func (hc *h1Client) send(req string) {
	hc.t.Helper()
	n, err := io.WriteString(hc.c, req)
	hc.sent += int64(n)
	require.NoError(hc.t, err)
}

// read reads one response to a request with method.
func (hc *h1Client) read(method string) (*http.Response, string) {
	hc.t.Helper()
	resp, err := http.ReadResponse(hc.br, &http.Request{Method: method})
	require.NoError(hc.t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(hc.t, err)
	resp.Body.Close()
	return resp, string(b)
}

func (hc *h1Client) do(req string) (*http.Response, string) {
	hc.t.Helper()
	hc.send(req)
	return hc.read(strings.Fields(req)[0])
}

// TestDirectHTTP1 drives the direct path through both sidecars on one
// keep-alive connection: framing (length, chunked with trailers, until the
// upstream closes, informational answers, HEAD, a large body), request
// bodies in one write and copied, the header rules, and exact counts.
func TestDirectHTTP1(t *testing.T) {
	var evA, evB events
	addr, pA, pB := h1Pair(t, h1Backend(t), &evA, &evB)
	hc := dialH1(t, addr)

	resp, body := hc.do("GET /a?b=1 HTTP/1.1\r\nHost: app\r\nL5d-Client-Id: forged\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nX-Kept: k\r\n\r\n")
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, `GET /a?b=1 host=app len=0 sum=e3b0c442 id=["spiffe://h1.test/sa/client"] hop="" kept="k"`, body)

	small := strings.Repeat("s", 1000)
	resp, body = hc.do("POST /small HTTP/1.1\r\nHost: app\r\nContent-Length: 1000\r\n\r\n" + small)
	require.Equal(t, 200, resp.StatusCode)
	sum := sha256.Sum256([]byte(small))
	require.Contains(t, body, fmt.Sprintf("len=1000 sum=%x", sum[:4]))

	large := strings.Repeat("L", 300<<10) // copied, beyond the read buffer
	hc.send("PUT /large HTTP/1.1\r\nHost: app\r\nContent-Length: " + strconv.Itoa(len(large)) + "\r\n\r\n")
	hc.send(large)
	resp, body = hc.read("PUT")
	require.Equal(t, 200, resp.StatusCode)
	sum = sha256.Sum256([]byte(large))
	require.Contains(t, body, fmt.Sprintf("len=%d sum=%x", len(large), sum[:4]))

	resp, body = hc.do("GET /chunked HTTP/1.1\r\nHost: app\r\n\r\n")
	require.Equal(t, []string{"chunked"}, resp.TransferEncoding)
	require.Equal(t, "part 0;part 1;part 2;", body)
	require.Equal(t, "3 parts", resp.Trailer.Get("X-Sum"))

	resp, _ = hc.do("GET /early HTTP/1.1\r\nHost: app\r\n\r\n")
	require.Equal(t, http.StatusEarlyHints, resp.StatusCode, "the 103 passed on")
	require.Equal(t, "</style.css>; rel=preload", resp.Header.Get("Link"))
	resp, body = hc.read("GET")
	require.Equal(t, 200, resp.StatusCode, "then the answer")
	require.Equal(t, "after hints", body)

	resp, body = hc.do("HEAD /big HTTP/1.1\r\nHost: app\r\n\r\n")
	require.Equal(t, int64(1<<20), resp.ContentLength)
	require.Empty(t, body)

	resp, body = hc.do("GET /big HTTP/1.1\r\nHost: app\r\n\r\n")
	require.Len(t, body, 1<<20)

	resp, _ = hc.do("GET /hop HTTP/1.1\r\nHost: app\r\n\r\n")
	require.Equal(t, "yes", resp.Header.Get("X-Resp-Kept"))
	require.Empty(t, resp.Header.Get("X-Resp-Hop"), "named in the response's Connection")
	require.Empty(t, resp.Header.Get("Keep-Alive"))

	resp, body = hc.do("GET /eof HTTP/1.1\r\nHost: app\r\n\r\n")
	require.Equal(t, "until the end", body)
	require.True(t, resp.Close, "a body that ends with the connection ends the client's too")
	_, err := hc.br.ReadByte()
	require.ErrorIs(t, err, io.EOF)
	hc.c.Close()

	const requests = 9
	require.Equal(t, uint64(requests), pA.http.direct.Load())
	require.Equal(t, uint64(requests), pB.http.direct.Load())
	require.Zero(t, pA.http.handoffs.Load()+pB.http.handoffs.Load(), "nothing went to net/http")
	ev := evA.wait(t, 1)[0]
	require.Equal(t, hc.sent, ev.ClientBytes, "bytes from the client, exactly")
	require.Equal(t, hc.recvd, ev.ServerBytes, "bytes to the client, exactly")
	require.NoError(t, ev.Err)
	require.Equal(t, detect.HTTP1, ev.Protocol)
	require.Equal(t, "spiffe://h1.test/sa/server", ev.PeerID.String())
	for _, c := range []struct {
		p   *Proxy
		dir opaque.Direction
	}{{pA, opaque.Outbound}, {pB, opaque.Inbound}} {
		s := c.p.Metrics.Snapshot()
		require.Equal(t, float64(requests), s.Value("request_total", "direction", c.dir.String()))
		require.Equal(t, float64(requests), s.Value("response_total", "direction", c.dir.String(), "status_code", "200", "classification", "success"))
	}
	s := pA.Metrics.Snapshot()
	require.Equal(t, float64(hc.sent), s.Value("tcp_read_bytes_total", "direction", "outbound"))
	require.Equal(t, float64(hc.recvd), s.Value("tcp_write_bytes_total", "direction", "outbound"))
}

// TestDirectHandoff: a request the direct path does not carry (a WebSocket
// upgrade, then a chunked upload on another connection) goes to net/http
// with every byte already read, and each byte is counted once.
func TestDirectHandoff(t *testing.T) {
	var evA, evB events
	addr, pA, _ := h1Pair(t, h1Backend(t), &evA, &evB)
	hc := dialH1(t, addr)
	resp, _ := hc.do("GET / HTTP/1.1\r\nHost: app\r\n\r\n")
	require.Equal(t, 200, resp.StatusCode)
	hc.send("GET /ws HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://app\r\n\r\n")
	resp, err := http.ReadResponse(hc.br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	frame := []byte{0x82, 0x84, 1, 2, 3, 4, 'p' ^ 1, 'i' ^ 2, 'n' ^ 3, 'g' ^ 4} // masked binary "ping"
	n, err := hc.c.Write(frame)
	require.NoError(t, err)
	hc.sent += int64(n)
	echo := make([]byte, 6)
	_, err = io.ReadFull(hc.br, echo)
	require.NoError(t, err)
	require.Equal(t, []byte{0x81, 4, 'p', 'i', 'n', 'g'}, echo, "echoed (as a text frame: the handler's default)")
	hc.c.Close()
	ev := evA.wait(t, 1)[0]
	require.Equal(t, hc.sent, ev.ClientBytes)
	require.Equal(t, hc.recvd, ev.ServerBytes)
	require.Equal(t, uint64(1), pA.http.handoffs.Load())

	hc = dialH1(t, addr)
	resp, body := hc.do("POST /up HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, body, "len=5")
	resp, _ = hc.do("GET /after HTTP/1.1\r\nHost: app\r\n\r\n")
	require.Equal(t, 200, resp.StatusCode, "the rest of the connection on net/http")
	hc.c.Close()
	ev = evA.wait(t, 2)[1]
	require.Equal(t, hc.sent, ev.ClientBytes)
	require.Equal(t, hc.recvd, ev.ServerBytes)
	s := pA.Metrics.Snapshot()
	require.Equal(t, 4.0, s.Value("request_total", "direction", "outbound"), "each request counted once, on either path")
}

// TestDirectPipelined: requests written before their answers are answered
// in order.
func TestDirectPipelined(t *testing.T) {
	var evA, evB events
	addr, pA, _ := h1Pair(t, h1Backend(t), &evA, &evB)
	hc := dialH1(t, addr)
	hc.send("GET /1 HTTP/1.1\r\nHost: app\r\n\r\nGET /2 HTTP/1.1\r\nHost: app\r\n\r\nPOST /3 HTTP/1.1\r\nHost: app\r\nContent-Length: 2\r\n\r\nhiGET /4 HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
	for _, want := range []string{"GET /1 ", "GET /2 ", "POST /3 ", "GET /4 "} {
		_, body := hc.read(strings.Fields(want)[0])
		require.True(t, strings.HasPrefix(body, want), "%q, want %q", body, want)
	}
	_, err := hc.br.ReadByte()
	require.ErrorIs(t, err, io.EOF, "closed after Connection: close")
	require.Equal(t, uint64(4), pA.http.direct.Load())
}

// TestDirectStaleUpstream: the application closes each keep-alive
// connection after one answer without saying so; the pooled connection is
// found closed and the request goes again on a new one, once.
func TestDirectStaleUpstream(t *testing.T) {
	app := testserver.Serve(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path)
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
	})
	var evA, evB events
	addr, pA, _ := h1Pair(t, app, &evA, &evB)
	hc := dialH1(t, addr)
	for _, path := range []string{"/one", "/two", "/three"} {
		time.Sleep(50 * time.Millisecond) // B's connection to the application is closed by now
		resp, body := hc.do("GET " + path + " HTTP/1.1\r\nHost: app\r\n\r\n")
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, path, body)
	}
	hc.c.Close()
	require.Equal(t, uint64(3), pA.http.direct.Load())
}

// TestDirectUpstreamErrors: answers for upstreams that fail: 502 for a
// malformed response, and the connection goes on.
func TestDirectUpstreamErrors(t *testing.T) {
	app := testserver.Serve(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			switch req.URL.Path {
			case "/junk":
				io.WriteString(c, "SSH-2.0-not-http\r\n\r\n")
				return
			case "/cut":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	var evA, evB events
	addr, pA, _ := h1Pair(t, app, &evA, &evB)
	hc := dialH1(t, addr)
	resp, body := hc.do("GET /junk HTTP/1.1\r\nHost: app\r\n\r\n")
	require.Equal(t, http.StatusBadGateway, resp.StatusCode)
	require.Equal(t, "Bad Gateway\n", body)
	resp, body = hc.do("GET /fine HTTP/1.1\r\nHost: app\r\n\r\n")
	require.Equal(t, 200, resp.StatusCode, "the connection goes on after a 502")
	require.Equal(t, "ok", body)
	hc.send("GET /cut HTTP/1.1\r\nHost: app\r\n\r\n")
	resp, err := http.ReadResponse(hc.br, nil)
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF, "a body cut short ends the client's connection")
	hc.c.Close()
	s := pA.Metrics.Snapshot()
	require.Equal(t, 1.0, s.Value("response_total", "direction", "outbound", "status_code", "502", "classification", "failure"))
	require.Equal(t, 3.0, s.Value("request_total", "direction", "outbound"))
}

// TestDirectParked: a keep-alive connection idle past h1Linger waits in
// its listener's Waiter without a goroutine; its next request is served as
// any other, its one event comes when it ends, with every byte of its life;
// closing the sidecar ends a connection still parked.
func TestDirectParked(t *testing.T) {
	restore := h1Linger
	t.Cleanup(func() { h1Linger = restore }) // after the sidecars have closed
	h1Linger = 100 * time.Millisecond
	var evA, evB events
	addr, pA, _ := h1Pair(t, h1Backend(t), &evA, &evB)
	hc := dialH1(t, addr)
	resp, _ := hc.do("GET /1 HTTP/1.1\r\nHost: app\r\n\r\n")
	require.Equal(t, 200, resp.StatusCode)
	require.Eventually(t, func() bool { return pA.http.parks.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	evA.mu.Lock()
	n := len(evA.evs)
	evA.mu.Unlock()
	require.Zero(t, n, "no event while the connection lives")
	resp, body := hc.do("POST /2 HTTP/1.1\r\nHost: app\r\nContent-Length: 4\r\n\r\nbody")
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, body, "POST /2 host=app len=4")
	require.Eventually(t, func() bool { return pA.http.parks.Load() == 2 }, 5*time.Second, 10*time.Millisecond, "parked again")
	hc.send("GET /ws HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://app\r\n\r\n")
	resp, err := http.ReadResponse(hc.br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode, "net/http after a park")
	hc.c.Close()
	evs := evA.wait(t, 1)
	require.Len(t, evs, 1)
	ev := evs[0]
	require.Equal(t, hc.sent, ev.ClientBytes)
	require.Equal(t, hc.recvd, ev.ServerBytes)
	require.GreaterOrEqual(t, ev.Duration, 2*h1Linger, "the whole life of the connection")
	require.Equal(t, detect.HTTP1, ev.Protocol)
	require.Equal(t, "spiffe://h1.test/sa/server", ev.PeerID.String())
	require.Nil(t, ev.parked)
	// What the event said before the connection parked, kept compactly while it was parked.
	require.Equal(t, opaque.Outbound, ev.Direction)
	require.Equal(t, PathDetect, ev.Path)
	require.True(t, ev.Dst.IsValid())
	require.Equal(t, detect.HTTP1, ev.Detect.Protocol)
	require.Equal(t, detect.ReasonMatched, ev.Detect.Reason)
	require.Positive(t, ev.Detect.Bytes)
	require.Positive(t, ev.Detect.Duration)
	require.Equal(t, "GET", ev.Detect.HTTP.Method)
	require.Equal(t, "app", ev.Detect.HTTP.Host())
	require.NoError(t, ev.Err)
	s := pA.Metrics.Snapshot()
	require.Equal(t, 3.0, s.Value("request_total", "direction", "outbound"))
	require.Eventually(t, func() bool {
		return pA.Metrics.Snapshot().Value("tcp_open_connections", "direction", "outbound") == 0
	}, 5*time.Second, 10*time.Millisecond, "the connection's metrics ended once")
	require.Equal(t, float64(hc.sent), s.Value("tcp_read_bytes_total", "direction", "outbound"))
}

// TestLingerCap: beyond h1MaxLingering idle connections, the next one
// parks as soon as its answer is written, not after h1Linger; a connection
// parked that way is served again when it sends its next request (the
// Waiter's report is read, not parked again unread), and each connection's
// one event counts every byte.
func TestLingerCap(t *testing.T) {
	restoreLinger, restoreMax := h1Linger, h1MaxLingering
	t.Cleanup(func() { h1Linger, h1MaxLingering = restoreLinger, restoreMax })
	h1Linger, h1MaxLingering = time.Minute, 1
	var evA, evB events
	addr, pA, _ := h1Pair(t, h1Backend(t), &evA, &evB)
	var hcs []*h1Client
	for i := range 3 {
		hc := dialH1(t, addr)
		resp, _ := hc.do("GET / HTTP/1.1\r\nHost: app\r\n\r\n")
		require.Equal(t, 200, resp.StatusCode)
		hcs = append(hcs, hc)
		require.Eventually(t, func() bool { return pA.http.parks.Load() == uint64(i) }, 5*time.Second, time.Millisecond,
			"the first lingers, the others park at once")
	}
	require.Equal(t, int64(1), pA.http.lingering.Load())
	for i, hc := range hcs {
		resp, body := hc.do(fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: app\r\n\r\n", i))
		require.Equal(t, 200, resp.StatusCode)
		require.Contains(t, body, fmt.Sprintf("GET /%d", i))
	}
	require.Eventually(t, func() bool { return pA.http.parks.Load() == 4 }, 5*time.Second, time.Millisecond,
		"the parked two parked again at once")
	require.Equal(t, int64(1), pA.http.lingering.Load())
	for _, hc := range hcs {
		hc.c.Close()
	}
	evs := evA.wait(t, 3)
	var sent, got int64
	for i, hc := range hcs {
		sent += hc.sent
		got += evs[i].ClientBytes
	}
	require.Equal(t, sent, got)
	require.Eventually(t, func() bool { return pA.http.lingering.Load() == 0 }, 5*time.Second, time.Millisecond)
}

// TestParkedClosedBySidecar: closing the sidecar ends the connections
// parked in its Waiter, each with its event, and leaves no goroutine
// (goleak).
func TestParkedClosedBySidecar(t *testing.T) {
	restore := h1Linger
	t.Cleanup(func() { h1Linger = restore })
	h1Linger = 50 * time.Millisecond
	backend := h1Backend(t)
	ca := mtlstest.MustNew("h1.test")
	src := ca.Source("/sa/client")
	var ev events
	pA := &Proxy{TLS: &mtls.Config{SVID: src, Bundle: src}, OnEvent: ev.add,
		Peers: func(netip.AddrPort) (Peer, error) { return Peer{}, nil }} // not meshed: plain to the backend
	sA, err := Start(context.Background(), pA, Listeners{Forwards: []Forward{{Listen: "127.0.0.1:0", Dst: backend}}})
	require.NoError(t, err)
	var hcs []*h1Client
	for range 3 {
		hc := dialH1(t, sA.ForwardAddrs[0].String())
		resp, _ := hc.do("GET / HTTP/1.1\r\nHost: app\r\n\r\n")
		require.Equal(t, 200, resp.StatusCode)
		hcs = append(hcs, hc)
	}
	require.Eventually(t, func() bool { return pA.http.parks.Load() == 3 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, sA.Close())
	evs := ev.wait(t, 3)
	for i, hc := range hcs {
		_, err := hc.br.ReadByte()
		require.ErrorIs(t, err, io.EOF, "closed")
		hc.c.Close()
		require.Positive(t, evs[i].ClientBytes)
	}
}

// TestDirectLargeHead: a request head larger than the read buffer grows it
// (up to h1MaxHead) and is carried; a larger one goes to net/http, which
// answers 431 as it always has.
func TestDirectLargeHead(t *testing.T) {
	var evA, evB events
	addr, pA, _ := h1Pair(t, h1Backend(t), &evA, &evB)
	hc := dialH1(t, addr)
	resp, body := hc.do("GET /big-head HTTP/1.1\r\nHost: app\r\nX-Kept: " + strings.Repeat("k", 20<<10) + "\r\n\r\n")
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, body, `kept="kkkk`)
	require.Equal(t, uint64(1), pA.http.direct.Load())
	resp, _ = hc.do("GET / HTTP/1.1\r\nHost: app\r\nX-Big: " + strings.Repeat("a", 100<<10) + "\r\n\r\n")
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
	require.Equal(t, uint64(1), pA.http.handoffs.Load())
	hc.c.Close()
	ev := evA.wait(t, 1)[0]
	// net/http stops reading a head past its limit: not every byte sent
	// was read, and none read is counted twice.
	require.LessOrEqual(t, ev.ClientBytes, hc.sent)
	require.Greater(t, ev.ClientBytes, int64(20<<10+h1MaxHead))
}
