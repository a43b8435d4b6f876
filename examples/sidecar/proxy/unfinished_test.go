package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/examples/sidecar/internal/testserver"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/opaque"
)

// TestHandleLocalRefusesUnfinishedHTTP: an unmeshed client of a local port (what the inbound
// redirect delivers, HandleLocal) whose first bytes begin an HTTP request that detection cannot
// finish is answered 431 (the request line does not fit the detection buffer) or 408 (it does
// not arrive within the detection timeout), counted as the inbound side's answer, and none of
// its bytes, a forged l5d-client-id among them, reach the application. Undecided bytes that
// cannot begin an HTTP request, as slow, are carried opaque: the rule refuses HTTP only.
func TestHandleLocalRefusesUnfinishedHTTP(t *testing.T) {
	var (
		mu  sync.Mutex
		got []string // what the application read, per connection
	)
	app := testserver.Serve(t, func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
	})
	appRead := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
	forged := "l5d-client-id: spiffe://evil/forged\r\n"
	for _, tc := range []struct {
		name   string
		write  func(c net.Conn)
		status int    // the answer; 0: carried opaque
		seen   string // what the application reads
	}{
		{"request line longer than the detection buffer", func(c net.Conn) {
			io.WriteString(c, "GET /"+strings.Repeat("a", 20<<10)+" HTTP/1.1\r\nHost: app\r\n"+forged+"\r\n")
		}, http.StatusRequestHeaderFieldsTooLarge, ""},
		{"request line slower than the detection timeout", func(c net.Conn) {
			io.WriteString(c, "GET /sl")
			time.Sleep(600 * time.Millisecond)
			io.WriteString(c, "ow HTTP/1.1\r\nHost: app\r\n"+forged+"\r\n")
		}, http.StatusRequestTimeout, ""},
		{"the start of a TLS record, slower than the detection timeout", func(c net.Conn) {
			io.WriteString(c, "\x16\x03\x01") // undecided: it may be a ClientHello
			time.Sleep(600 * time.Millisecond)
			io.WriteString(c, "\x00\x02ab")
			c.(*net.TCPConn).CloseWrite()
		}, 0, "\x16\x03\x01\x00\x02ab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := mtlstest.MustNew("local.test")
			src := ca.Source("/b")
			reg := metrics.New(metrics.Config{})
			var ev events
			p := &Proxy{TLS: &mtls.Config{SVID: src, Bundle: src}, OnEvent: ev.add, Metrics: reg,
				Detector: &detect.Detector{Timeout: 300 * time.Millisecond}}
			front, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer front.Close()
			handled := make(chan struct{})
			go func() {
				defer close(handled)
				if c, err := front.Accept(); err == nil {
					p.HandleLocal(context.Background(), c, app.Port())
				}
			}()
			defer func() { <-handled }()
			before := len(appRead())
			c, err := net.Dial("tcp", front.Addr().String())
			require.NoError(t, err)
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			tc.write(c)
			e := ev.wait(t, 1)[0]
			if tc.status == 0 {
				require.NoError(t, e.Err)
				require.Equal(t, detect.ReasonTimeout, e.Detect.Reason)
			} else {
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				require.NoError(t, err)
				resp.Body.Close()
				require.Equal(t, tc.status, resp.StatusCode)
				require.ErrorIs(t, e.Err, ErrUnfinishedHTTP)
				require.Equal(t, uint64(1), responseCount(reg.Snapshot(), opaque.Inbound, tc.status, ""), "counted inbound")
			}
			require.Eventually(t, func() bool { return len(appRead()) > before }, 10*time.Second, 5*time.Millisecond,
				"the application's connection ended")
			require.Equal(t, tc.seen, appRead()[before], "what the application read")
		})
	}
}
