package detect_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sniffsplice/sniff/detect"
)

// acceptDetect accepts one connection from ln and runs d.Detect on it.
func acceptDetect(t *testing.T, ln net.Listener, d *detect.Detector) <-chan detected {
	ch := make(chan detected, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- detected{err: err}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		res, conn, err := d.Detect(ctx, c)
		ch <- detected{res, conn, err}
	}()
	return ch
}

type detected struct {
	res  detect.Result
	conn net.Conn
	err  error
}

// h2cThroughDetect sends three requests with an x/net/http2 h2c client over
// one connection that passes through d.Detect to a net/http server with
// unencrypted HTTP/2 enabled.
func h2cThroughDetect(t *testing.T, d *detect.Detector) detect.Result {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	det := acceptDetect(t, ln, d)

	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Protocols: &protos,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s", r.Proto, r.URL.Path)
		}),
	}
	var dials atomic.Int32
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}

	type resp struct {
		body string
		err  error
	}
	first := make(chan resp, 1)
	go func() {
		r, err := client.Get("http://" + ln.Addr().String() + "/one")
		if err != nil {
			first <- resp{err: err}
			return
		}
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		first <- resp{string(b), err}
	}()
	dd := recv(t, det, "det")
	require.NoError(t, dd.err)
	ol := newOneConnListener(dd.conn)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ol) }()

	r := recv(t, first, "first")
	require.NoError(t, r.err)
	assert.Equal(t, "HTTP/2.0 /one", r.body)
	for _, p := range []string{"/two", "/three"} {
		rr, err := client.Get("http://" + ln.Addr().String() + p)
		require.NoError(t, err)
		b, err := io.ReadAll(rr.Body)
		rr.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, "HTTP/2.0 "+p, string(b))
	}
	assert.Equal(t, int32(1), dials.Load(), "all requests must share the one detected connection")
	tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, srv.Shutdown(ctx))
	recv(t, served, "served")
	return dd.res
}

// An h2c client through active mode to a net/http h2c server: the server
// must not see the ACK of the detector's SETTINGS (cmux's bug).
func TestGRPCActiveH2CToNetHTTP(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	res := h2cThroughDetect(t, &detect.Detector{GRPC: detect.GRPCActive, GRPCWait: 10 * time.Second})
	assert.Equal(t, detect.HTTP2, res.Protocol)
	assert.Equal(t, detect.ReasonMatched, res.Reason)
}

// The x/net/http2 client sends HEADERS without waiting, so passive mode
// decides from them instead of waiting out GRPCWait.
func TestGRPCPassiveH2CSeesHeaders(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	res := h2cThroughDetect(t, &detect.Detector{GRPC: detect.GRPCPassive, GRPCWait: 30 * time.Second})
	assert.Equal(t, detect.HTTP2, res.Protocol)
	assert.Less(t, res.Duration, 15*time.Second, "passive mode must decide from the HEADERS, not wait out GRPCWait")
}

// h2Request returns a client preface, SETTINGS and a HEADERS frame with the
// given content-type, as a client that does not wait would send them.
func h2Request(t testing.TB, contentType string, splitHeaders bool) []byte {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/pkg.Svc/Method"}, {Name: ":authority", Value: "x"},
		{Name: "content-type", Value: contentType}, {Name: "te", Value: "trailers"},
	} {
		require.NoError(t, enc.WriteField(f))
	}
	var out bytes.Buffer
	out.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&out, nil)
	require.NoError(t, fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}))
	require.NoError(t, fr.WriteWindowUpdate(0, 1<<20))
	block := hb.Bytes()
	if splitHeaders {
		require.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:5]}))
		require.NoError(t, fr.WriteContinuation(1, true, block[5:]))
	} else {
		require.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true}))
	}
	return out.Bytes()
}

// Passive refinement reads content-type from HEADERS (and CONTINUATION),
// over both paths, without consuming on TCP.
func TestGRPCPassiveContentType(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cases := []struct {
		ct    string
		split bool
		want  detect.Protocol
	}{
		{"application/grpc", false, detect.GRPC},
		{"application/grpc+proto", true, detect.GRPC},
		{"application/grpc;charset=utf-8", false, detect.GRPC},
		{"application/grpc-web", false, detect.HTTP2},
		{"application/json", true, detect.HTTP2},
	}
	for _, tc := range cases {
		for _, tr := range transports() {
			t.Run(tc.ct+"/"+tr.name, func(t *testing.T) {
				in := h2Request(t, tc.ct, tc.split)
				client, server := tr.pair(t)
				defer client.Close()
				sent := make(chan error, 1)
				go func() {
					for i := 0; i < len(in); i += 7 { // small segments
						if _, err := client.Write(in[i:min(i+7, len(in))]); err != nil {
							sent <- err
							return
						}
					}
					sent <- tr.closeWrite(client)
				}()
				d := &detect.Detector{GRPC: detect.GRPCPassive, GRPCWait: 30 * time.Second}
				res, conn, err := d.Detect(context.Background(), server)
				require.NoError(t, err)
				defer conn.Close()
				assert.Equal(t, tc.want, res.Protocol)
				assert.Less(t, res.Duration, 15*time.Second)
				if tr.name == "tcp" && runtime.GOOS == "linux" {
					assert.Same(t, server, conn, "passive mode consumes nothing")
				}
				got, err := io.ReadAll(bounded(conn))
				require.NoError(t, err)
				require.NoError(t, recv(t, sent, "sent"))
				assert.Equal(t, in, got)
			})
		}
	}
}

// In active mode the detector writes exactly one empty SETTINGS frame and
// hands back every client byte except the ACK of it, whether the ACK comes
// before or after the HEADERS.
func TestGRPCActiveStripsOnlyOurACK(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, ackFirst := range []bool{true, false} {
		for _, tr := range transports() {
			t.Run(fmt.Sprintf("ackFirst=%v/%s", ackFirst, tr.name), func(t *testing.T) {
				req := h2Request(t, "application/grpc", false)
				prefaceAndSettings := req[:len(http2.ClientPreface)+9+6]
				rest := req[len(prefaceAndSettings):] // WINDOW_UPDATE + HEADERS
				var ack bytes.Buffer
				require.NoError(t, http2.NewFramer(&ack, nil).WriteSettingsAck())

				client, server := tr.pair(t)
				defer client.Close()
				tail := append(append([]byte(nil), rest...), ack.Bytes()...)
				if ackFirst {
					tail = append(append([]byte(nil), ack.Bytes()...), rest...)
				}
				// The client checks that the detector wrote one empty
				// SETTINGS frame.
				clientDone := activeGRPCClient(tr, client, prefaceAndSettings, nil, tail)
				d := &detect.Detector{GRPC: detect.GRPCActive, GRPCWait: 10 * time.Second}
				res, conn, err := d.Detect(context.Background(), server)
				require.NoError(t, err)
				defer conn.Close()
				assert.Equal(t, detect.GRPC, res.Protocol)
				_, isReplay := conn.(*detect.ReplayConn)
				assert.True(t, isReplay, "active mode consumes bytes and must hand back a ReplayConn")
				got, err := io.ReadAll(bounded(conn))
				require.NoError(t, err)
				require.NoError(t, recv(t, clientDone, "clientDone"))
				assert.Equal(t, req, got, "every client byte but the ACK, in order")
			})
		}
	}
}

// An HTTP/2 client that ACKs the detector's SETTINGS but sends no HEADERS
// within GRPCWait is reported as HTTP/2, and its ACK is still removed.
func TestGRPCActiveNoHeadersStillStripsACK(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			var pre bytes.Buffer
			pre.WriteString(http2.ClientPreface)
			fr := http2.NewFramer(&pre, nil)
			require.NoError(t, fr.WriteSettings())
			var ack bytes.Buffer
			require.NoError(t, http2.NewFramer(&ack, nil).WriteSettingsAck())

			client, server := tr.pair(t)
			defer client.Close()
			release := make(chan struct{})
			// The client stays open and silent after its ACK until
			// detection is over.
			clientDone := activeGRPCClient(tr, client, pre.Bytes(), release, ack.Bytes())
			d := &detect.Detector{GRPC: detect.GRPCActive, GRPCWait: 100 * time.Millisecond}
			res, conn, err := d.Detect(context.Background(), server)
			close(release)
			require.NoError(t, err)
			defer conn.Close()
			assert.Equal(t, detect.HTTP2, res.Protocol)
			assert.Equal(t, detect.ReasonMatched, res.Reason)
			got, err := io.ReadAll(bounded(conn))
			require.NoError(t, err)
			require.NoError(t, recv(t, clientDone, "clientDone"))
			assert.Equal(t, pre.Bytes(), got, "the ACK must not be handed on")
		})
	}
}
