package opaque

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/detect"
)

func TestHeaderMatcherVerdicts(t *testing.T) {
	bound(t)
	m := HeaderMatcher()
	assert.Equal(t, TransportHeader, m.Protocol())
	enc, err := Header{Port: 80}.MarshalBinary()
	require.NoError(t, err)
	for i := 0; i <= len(enc); i++ {
		want := detect.NeedMore
		if i >= prefaceLen {
			want = detect.Match
		}
		assert.Equal(t, want, m.Match(enc[:i], nil), "prefix %d", i)
	}
	assert.Equal(t, detect.NoMatch, m.Match([]byte("G"), nil))
	assert.Equal(t, detect.NoMatch, m.Match([]byte("transport.l5d.io/v2"), nil))
	assert.Equal(t, detect.NoMatch, m.Match([]byte("PRI * HTTP/2.0\r\n"), nil))
}

// TestHeaderMatcherWithDetector: one inbound port takes both header-prefixed
// connections and plain HTTP/1; the Detector tells them apart without
// consuming a byte, and ReadHeader then reads the header from the connection
// Detect handed back, leaving the application bytes.
func TestHeaderMatcherWithDetector(t *testing.T) {
	bound(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	d := &detect.Detector{
		Matchers: append([]detect.Matcher{HeaderMatcher()}, detect.DefaultMatchers()...),
		Timeout:  30 * time.Second,
	}
	hdr := Header{Port: 6379, SessionProtocol: SessionNone}
	app := []byte("*1\r\n$4\r\nPING\r\n")
	enc, err := hdr.MarshalBinary()
	require.NoError(t, err)

	for _, tc := range []struct {
		name  string
		send  []byte
		proto detect.Protocol
	}{
		{"header", append(enc, app...), TransportHeader},
		{"http1", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), detect.HTTP1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					done <- err
					return
				}
				defer c.Close()
				if _, err := c.Write(tc.send); err != nil {
					done <- err
					return
				}
				done <- c.(*net.TCPConn).CloseWrite()
			}()
			c, err := ln.Accept()
			require.NoError(t, err)
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, c2, err := d.Detect(ctx, c)
			require.NoError(t, err)
			assert.Equal(t, tc.proto, res.Protocol)
			if tc.proto == TransportHeader {
				h, err := ReadHeaderContext(ctx, c2)
				require.NoError(t, err)
				assert.Equal(t, hdr, h)
				rest, err := io.ReadAll(c2)
				require.NoError(t, err)
				assert.Equal(t, app, rest)
			} else {
				rest, err := io.ReadAll(c2)
				require.NoError(t, err)
				assert.True(t, bytes.Equal(tc.send, rest), "nothing lost")
			}
			require.NoError(t, <-done)
		})
	}
}
