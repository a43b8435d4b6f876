package proxyproto_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/proxyproto"
	"github.com/sniffsplice/sniff/splice"
)

// TestListenerHTTP: net/http behind a Listener sees the client's address
// from the header in Request.RemoteAddr, and a client that connects and
// stays silent does not hold up the others: Accept does not read.
func TestListenerHTTP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	pl := &proxyproto.Listener{Listener: ln, Reader: &proxyproto.Reader{Timeout: 5 * time.Second}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.RemoteAddr)
	}), ReadTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(pl) }()
	defer func() {
		require.NoError(t, srv.Shutdown(context.Background()))
		require.ErrorIs(t, <-served, http.ErrServerClosed)
	}()

	// A silent client first.
	silent, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer silent.Close()

	for _, hdr := range []string{hdrV1, hdrV2} {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		_, err = c.Write([]byte(hdr + "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(4*time.Second)))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err, "answered while another client is silent")
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		resp.Body.Close()
		c.Close()
		assert.Equal(t, "192.0.2.1:1234", string(body))
	}
}

func TestListenerConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	pl := &proxyproto.Listener{Listener: ln} // nil Reader: header required
	for _, tc := range []struct {
		name, send string
		err        error
	}{
		{"header", hdrV2 + "after", nil},
		{"none", "GET / HTTP/1.1\r\n\r\n", proxyproto.ErrNoHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", ln.Addr().String())
			require.NoError(t, err)
			defer c.Close()
			sent := send(c, true, tc.send)
			a, err := pl.Accept()
			require.NoError(t, err)
			defer a.Close()
			pc := a.(*proxyproto.Conn)
			// A read deadline set before the header is kept for the reads
			// after it.
			require.NoError(t, pc.SetReadDeadline(time.Now().Add(10*time.Second)))
			h, err := pc.Header()
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				_, rerr := pc.Read(make([]byte, 1))
				require.ErrorIs(t, rerr, tc.err, "Read returns the header's error")
				assert.Equal(t, 1, pc.Buffered(), "so a splice goes through Read")
				assert.Equal(t, c.LocalAddr().String(), pc.RemoteAddr().String())
				<-sent
				return
			}
			require.NoError(t, err)
			assert.Equal(t, src4, h.Source)
			assert.Equal(t, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1).To4(), Port: 1234}, pc.RemoteAddr())
			assert.Equal(t, &net.TCPAddr{IP: net.IPv4(198, 51, 100, 2).To4(), Port: 443}, pc.LocalAddr())
			assert.Zero(t, pc.Buffered())
			_, isTCP := pc.NetConn().(*net.TCPConn)
			assert.True(t, isTCP, "NetConn is the accepted *net.TCPConn: package splice reaches it")
			b, err := io.ReadAll(pc)
			require.NoError(t, err)
			assert.Equal(t, "after", string(b))
			require.NoError(t, <-sent)
		})
	}
}

// TestListenerConnSplices: a Listener's Conn joined by package splice moves
// the bytes after the header with splice(2) (it is a splice.Unwrapper
// whose NetConn is the *net.TCPConn).
func TestListenerConnSplices(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	pl := &proxyproto.Listener{Listener: ln}
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	a, err := pl.Accept()
	require.NoError(t, err)
	up, down := tcpPair(t, "tcp4")

	const n = 4 << 20
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte(hdrV1))
		if err == nil {
			_, err = c.Write(make([]byte, n))
		}
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got := make(chan int64, 1)
	go func() { k, _ := io.Copy(io.Discard, down); down.Close(); got <- k }()
	var obs chunkObserver
	j := splice.Joiner{SpliceThreshold: joinerBuf, BufferSize: joinerBuf}
	_, err = j.Join(context.Background(), a, up, &obs)
	require.NoError(t, err)
	require.NoError(t, <-errc)
	assert.Equal(t, int64(n), <-got)
	assert.Equal(t, int64(n), obs.total[splice.AToB].Load())
	assert.Greater(t, obs.spliced[splice.AToB].Load(), int64(n/2), "most bytes in chunks only splice(2) moves")
	h, err := a.(*proxyproto.Conn).Header()
	require.NoError(t, err)
	assert.Equal(t, netip.MustParseAddrPort("192.0.2.1:1234"), h.Source)
}
