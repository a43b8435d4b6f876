package detect_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/proxyproto"
)

// TestMuxPreamblePROXY: behind a load balancer that sends a PROXY v2 header first, a Mux whose
// Preamble strips it detects what follows (HTTP/1, not PROXY), the HTTP server sees the client's
// address from the header, and a connection without a header is closed and counted.
func TestMuxPreamblePROXY(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var reader proxyproto.Reader // a header is required
	var events muxEvents
	m, serve := startMux(t, nil, detect.MuxConfig{
		OnConn: events.add,
		Preamble: func(ctx context.Context, c net.Conn) (net.Conn, error) {
			c, h, err := reader.ReadHeader(ctx, c)
			if err != nil || h == nil {
				return c, err
			}
			return proxyproto.NewConn(c, h), nil
		},
	})
	httpL := m.Match(detect.HTTP1)
	remotes := make(chan string, 1)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		remotes <- r.RemoteAddr
		io.WriteString(w, "behind the balancer")
	})}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = hs.Serve(httpL) }()
	serveErr := serve()

	client := netip.MustParseAddrPort("203.0.113.7:40000")
	h := &proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.TCP4,
		Source: client, Destination: netip.MustParseAddrPort("198.51.100.1:443")}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if _, err := h.WriteTo(c); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}}
	assert.Equal(t, "behind the balancer", httpGet(t, tr, "http://"+m.Addr().String()+"/"))
	assert.Equal(t, client.String(), recv(t, remotes, "the request's remote address"))

	// No header: closed, counted as a failed detection with the proxyproto error.
	c, err := net.Dial("tcp", m.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
	require.NoError(t, err)
	_, err = bounded(c).Read(make([]byte, 1))
	assertPeerClosed(t, err, "a connection without a header is closed")

	require.NoError(t, m.Close())
	recv(t, serveErr, "Serve to return")
	require.NoError(t, hs.Close())
	waitGroup(t, &wg, "the HTTP server")
	assert.Equal(t, 1, events.count(detect.MuxRouted, detect.HTTP1))
	events.mu.Lock()
	defer events.mu.Unlock()
	var failed []error
	for _, ev := range events.evs {
		if ev.Outcome == detect.MuxDetectFailed {
			failed = append(failed, ev.Err)
		}
	}
	require.Len(t, failed, 1)
	assert.ErrorIs(t, failed[0], proxyproto.ErrNoHeader)
}
