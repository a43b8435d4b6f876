package detect_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/net/http2"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/splice"
)

// lateACKStream is a client byte stream in which the ACK of the
// detector's SETTINGS comes behind DATA, as from a client that sends a
// request body before it acknowledges: preface, SETTINGS, dataBefore bytes
// of DATA, the ACK, then more frames including a second SETTINGS ACK
// (which must be kept) and a HEADERS frame. It returns the stream, the
// offset of the first ACK and the stream without that ACK.
func lateACKStream(t testing.TB, dataBefore int) (in []byte, ackOff int, want []byte) {
	var b bytes.Buffer
	b.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&b, nil)
	require.NoError(t, fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}))
	body := bytes.Repeat([]byte("0123456789abcdef"), (dataBefore+15)/16)[:dataBefore]
	for len(body) > 0 {
		n := min(len(body), 16384)
		require.NoError(t, fr.WriteData(1, false, body[:n]))
		body = body[n:]
	}
	ackOff = b.Len()
	require.NoError(t, fr.WriteSettingsAck())
	require.NoError(t, fr.WriteData(1, false, []byte("after the ACK")))
	require.NoError(t, fr.WriteSettingsAck()) // not ours: kept
	hdr := h2Request(t, "application/grpc", false)
	b.Write(hdr[len(http2.ClientPreface)+9+6+13:]) // the HEADERS frame alone
	require.NoError(t, fr.WriteData(3, true, bytes.Repeat([]byte{0xaa}, 3000)))
	in = b.Bytes()
	want = append(append([]byte(nil), in[:ackOff]...), in[ackOff+9:]...)
	return in, ackOff, want
}

// readers are the ways a caller reads the handed-back connection.
var ackReaders = []struct {
	name string
	read func(t *testing.T, c net.Conn) []byte
}{
	{"ReadAll", func(t *testing.T, c net.Conn) []byte {
		b, err := io.ReadAll(c)
		require.NoError(t, err)
		return b
	}},
	{"small-reads", func(t *testing.T, c net.Conn) []byte {
		// Buffers of 1 to 40 bytes: shorter than a held frame header
		// and around the filter's small-read path.
		r := rand.New(rand.NewPCG(7, 7))
		var out []byte
		for i := 0; i < 1<<20; i++ {
			p := make([]byte, 1+r.IntN(40))
			n, err := c.Read(p)
			out = append(out, p[:n]...)
			if errors.Is(err, io.EOF) {
				return out
			}
			require.NoError(t, err)
		}
		t.Fatal("too many reads")
		return nil
	}},
	{"framer-reads", func(t *testing.T, c net.Conn) []byte {
		// As an HTTP/2 server's Framer reads: the preface, then
		// each 9-byte frame header and its payload with io.ReadFull.
		out := make([]byte, len(http2.ClientPreface))
		_, err := io.ReadFull(c, out)
		require.NoError(t, err)
		hdr := make([]byte, 9)
		for {
			if _, err := io.ReadFull(c, hdr); err != nil {
				require.ErrorIs(t, err, io.EOF)
				return out
			}
			out = append(out, hdr...)
			payload := make([]byte, int(hdr[0])<<16|int(hdr[1])<<8|int(hdr[2]))
			require.Less(t, len(payload), 1<<16, "a frame header out of step")
			_, err := io.ReadFull(c, payload)
			require.NoError(t, err)
			out = append(out, payload...)
		}
	}},
	{"unwrap-like-splice", func(t *testing.T, c net.Conn) []byte {
		// What splice.Join does with an Unwrapper: Read while Buffered
		// reports bytes, then read NetConn directly.
		rc := c.(*detect.ReplayConn)
		var out []byte
		buf := make([]byte, 32<<10)
		for rc.Buffered() > 0 {
			n, err := rc.Read(buf[:min(len(buf), rc.Buffered())])
			out = append(out, buf[:n]...)
			if errors.Is(err, io.EOF) {
				return out
			}
			require.NoError(t, err)
		}
		rest, err := io.ReadAll(rc.NetConn())
		require.NoError(t, err)
		return append(out, rest...)
	}},
	{"io.Copy-to-tcp", func(t *testing.T, c net.Conn) []byte {
		// io.Copy uses the ReplayConn's WriteTo: through the filter
		// until the ACK passed, then to the inner connection.
		dst, sink := tcpPair(t)
		defer sink.Close()
		got := make(chan []byte, 1)
		go func() {
			_ = sink.SetReadDeadline(time.Now().Add(20 * time.Second))
			b, _ := io.ReadAll(sink)
			got <- b
		}()
		_, err := io.Copy(dst, c)
		require.NoError(t, err)
		require.NoError(t, dst.Close())
		return recv(t, got, "got")
	}},
}

// When the client's ACK of the detector's SETTINGS is not among the bytes
// detection consumed (it comes behind DATA, past the peek limit, or its
// header is cut by the limit), the returned connection still drops exactly
// that ACK and hands on every other byte in order, however it is read.
func TestGRPCActiveDropsLateACK(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	in, ackOff, want := lateACKStream(t, 1000)
	first := len(http2.ClientPreface) + 9 + 6 // preface and SETTINGS
	limits := []int{
		ackOff - 3,            // among the DATA before the ACK
		ackOff,                // exactly before the ACK
		ackOff + 1,            // one byte of the ACK header
		ackOff + 8,            // all but one byte of it
		ackOff + 9,            // the ACK is consumed: removed from the buffer
		ackOff + 9 + 30,       // past it
		detect.DefaultMaxPeek, // everything
	}
	// How the client writes what follows its SETTINGS: in 5-byte pieces
	// (every frame header split), or in three writes with the ACK alone
	// (a reader then gets the ACK by itself, dropped to nothing).
	rest := len(in) - first
	fives := make([]int, 0, rest/5+1)
	for i := 0; i < rest; i += 5 {
		fives = append(fives, min(5, rest-i))
	}
	writes := map[string][]int{
		"5-byte-writes": fives,
		"ack-alone":     {ackOff - first, 9, len(in) - ackOff - 9},
	}
	for _, limit := range limits {
		for _, tr := range transports() {
			for _, rd := range ackReaders {
				for wname, cuts := range writes {
					t.Run(fmt.Sprintf("limit=%d/%s/%s/%s", limit, tr.name, rd.name, wname), func(t *testing.T) {
						client, server := tr.pair(t)
						defer client.Close()
						defer server.Close()
						require.NoError(t, client.SetDeadline(time.Now().Add(20*time.Second)))
						pieces, rest := make([][]byte, 0, len(cuts)), in[first:]
						for _, k := range cuts {
							pieces, rest = append(pieces, rest[:k]), rest[k:]
						}
						clientDone := activeGRPCClient(tr, client, in[:first], nil, pieces...)
						d := &detect.Detector{GRPC: detect.GRPCActive, MaxPeek: limit, GRPCWait: 10 * time.Second}
						ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
						defer cancel()
						res, conn, err := d.Detect(ctx, server)
						require.NoError(t, err)
						defer conn.Close()
						rc, ok := conn.(*detect.ReplayConn)
						require.True(t, ok, "active mode hands back a ReplayConn")
						switch {
						case limit < ackOff+9:
							assert.Equal(t, detect.HTTP2, res.Protocol, "no HEADERS within the limit")
							assert.Positive(t, rc.Buffered(), "the ACK is still to come: NetConn must not be read yet")
						case limit == detect.DefaultMaxPeek:
							assert.Equal(t, detect.GRPC, res.Protocol)
						}
						_ = server.SetReadDeadline(time.Now().Add(20 * time.Second)) // fails on a pipe whose client closed: reads then end at once
						got := rd.read(t, conn)
						require.NoError(t, recv(t, clientDone, "clientDone"))
						require.Equal(t, len(want), len(got), "exactly one frame header (the first ACK) removed")
						assert.True(t, bytes.Equal(want, got), "every client byte but the first ACK, in order")
					})
				}
			}
		}
	}
}

// A client that never acknowledges: the filter passes every byte, and a
// stream shorter than a frame header at EOF is handed on as sent.
func TestGRPCActiveNoACKPassesEverything(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var b bytes.Buffer
	b.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&b, nil)
	require.NoError(t, fr.WriteSettings())
	require.NoError(t, fr.WriteData(1, false, bytes.Repeat([]byte{1}, 40000)))
	b.Write([]byte{0, 0, 0, 4, 1}) // a cut header: the first 5 bytes of an ACK
	in := b.Bytes()
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			client, server := tr.pair(t)
			defer client.Close()
			defer server.Close()
			require.NoError(t, client.SetDeadline(time.Now().Add(20*time.Second)))
			clientDone := activeGRPCClient(tr, client, in[:33], nil, in[33:])
			d := &detect.Detector{GRPC: detect.GRPCActive, GRPCWait: 10 * time.Second}
			res, conn, err := d.Detect(context.Background(), server)
			require.NoError(t, err)
			defer conn.Close()
			assert.Equal(t, detect.HTTP2, res.Protocol)
			_ = server.SetReadDeadline(time.Now().Add(20 * time.Second))
			got, err := io.ReadAll(bounded(conn))
			require.NoError(t, err)
			require.NoError(t, recv(t, clientDone, "clientDone"))
			assert.True(t, bytes.Equal(in, got), "no ACK: nothing removed (got %d of %d bytes)", len(got), len(in))
		})
	}
}

// bodyHashHandler answers with the length and SHA-256 of the request body.
var bodyHashHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%s %d %s", r.Proto, n, hex.EncodeToString(h.Sum(nil)))
})

// Go's h2c transport POSTing 1 MiB through active mode into a real
// net/http h2c server: the client sends a window of DATA before it ACKs
// the detector's SETTINGS, past the peek limit, and the server must not
// see that ACK (it would answer PROTOCOL_ERROR). The server reads the
// handed-back connection directly ("serve"), behind io.Copy to its own
// listener ("proxy", WriteTo and splice) or behind splice.Join ("join",
// which reads through the ReplayConn while Buffered reports bytes and then
// splices from NetConn). Several connections, since when the ACK comes
// depends on scheduling.
func TestGRPCActiveH2CPostLargeBody(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	body := bytes.Repeat([]byte("sniff-h2c-body!\n"), 1<<16) // 1 MiB
	sum := sha256.Sum256(body)
	wantResp := fmt.Sprintf("HTTP/2.0 %d %s", len(body), hex.EncodeToString(sum[:]))
	for _, mode := range []string{"serve", "proxy", "join"} {
		t.Run(mode, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer ln.Close()
			var protos http.Protocols
			protos.SetUnencryptedHTTP2(true)
			srv := &http.Server{Protocols: &protos, Handler: bodyHashHandler}
			defer srv.Close()

			var backend net.Listener
			if mode != "serve" {
				backend, err = net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				defer backend.Close()
				go func() { _ = srv.Serve(backend) }()
			}
			d := &detect.Detector{GRPC: detect.GRPCActive, GRPCWait: 5 * time.Second}
			results := make(chan detect.Result, 8)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					res, conn, err := d.Detect(ctx, c)
					cancel()
					results <- res
					if err != nil {
						conn.Close()
						continue
					}
					if mode == "serve" {
						ol := newOneConnListener(conn)
						go func() { _ = srv.Serve(ol) }()
						continue
					}
					if mode == "join" {
						go joinTo(conn, backend.Addr().String())
						continue
					}
					go proxyTo(conn, backend.Addr().String())
				}
			}()

			for i := 0; i < 4; i++ {
				tr := &http2.Transport{
					AllowHTTP: true,
					DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
						return (&net.Dialer{}).DialContext(ctx, network, addr)
					},
				}
				client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
				for j := 0; j < 2; j++ { // the second request reuses the connection
					resp, err := client.Post("http://"+ln.Addr().String()+"/upload", "application/octet-stream", bytes.NewReader(body))
					require.NoError(t, err, "connection %d request %d", i, j)
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					require.NoError(t, err)
					require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
					assert.Equal(t, wantResp, string(b))
				}
				tr.CloseIdleConnections()
				res := recv(t, results, "results")
				assert.Equal(t, detect.HTTP2, res.Protocol)
				assert.Equal(t, detect.ReasonMatched, res.Reason)
			}
			ln.Close()
			recv(t, done, "done")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, srv.Shutdown(ctx))
		})
	}
}

// proxyTo copies c to a new connection to addr and back, as a TCP proxy
// does, and closes both when either direction ends.
func proxyTo(c net.Conn, addr string) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	errc := make(chan error, 2)
	go func() { _, err := io.Copy(up, c); _ = up.(*net.TCPConn).CloseWrite(); errc <- err }()
	go func() { _, err := io.Copy(c, up); errc <- err }()
	<-errc
	<-errc
}

// joinTo joins c with a new connection to addr through splice.Join.
func joinTo(c net.Conn, addr string) {
	up, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		c.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	_, _ = splice.Join(ctx, c, up)
}

// withoutFirstACK is the reference for the ACK filter: it walks the HTTP/2
// frame headers of a client stream after the preface and removes the
// first SETTINGS frame with the ACK flag, length 0, on stream 0.
func withoutFirstACK(in []byte) []byte {
	off := len(http2.ClientPreface)
	for off+9 <= len(in) {
		h := in[off : off+9]
		length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		stream := (uint32(h[5])<<24 | uint32(h[6])<<16 | uint32(h[7])<<8 | uint32(h[8])) & 0x7fffffff
		if length == 0 && h[3] == 4 && h[4]&1 != 0 && stream == 0 {
			return append(append([]byte(nil), in[:off]...), in[off+9:]...)
		}
		off += 9 + length
	}
	return in
}

// FuzzGRPCActiveACKFilter: for any client frames after the preface, any
// fragmentation of the writes, any peek limit and any read sizes, active
// mode hands back exactly the client's bytes without the first SETTINGS
// ACK frame, whether that ACK was among the consumed bytes or came later.
func FuzzGRPCActiveACKFilter(f *testing.F) {
	in, _, _ := lateACKStream(f, 1000)
	f.Add(in[len(http2.ClientPreface):], []byte{4, 9, 1, 30}, uint16(1000), []byte{8, 1, 200})
	req := h2Request(f, "application/grpc", true)
	ack := []byte{0, 0, 0, 4, 1, 0, 0, 0, 0}
	f.Add(append(append([]byte(nil), req[len(http2.ClientPreface):]...), ack...), []byte{}, uint16(0), []byte{})
	f.Add(append(append([]byte(nil), ack...), req[len(http2.ClientPreface):]...), []byte{2}, uint16(40), []byte{3})
	f.Add([]byte{0, 0, 0, 4, 1}, []byte{1}, uint16(3), []byte{0}) // a cut ACK header at EOF
	f.Add([]byte{0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4, 1, 0, 0, 0, 0}, []byte{5}, uint16(9), []byte{40})
	f.Fuzz(func(t *testing.T, frames, cuts []byte, peek uint16, reads []byte) {
		if len(frames) > 64<<10 {
			return
		}
		in := append([]byte(http2.ClientPreface), frames...)
		want := withoutFirstACK(in)
		c, s := net.Pipe()
		defer c.Close()
		defer s.Close()
		wrote := make(chan error, 1)
		go func() {
			defer c.Close()
			wrote <- func() error {
				if _, err := c.Write(in[:len(http2.ClientPreface)]); err != nil {
					return err
				}
				if _, err := io.ReadFull(c, make([]byte, 9)); err != nil {
					return err
				}
				rest := in[len(http2.ClientPreface):]
				for i := 0; len(rest) > 0; i++ {
					k := len(rest)
					if len(cuts) > 0 {
						k = min(k, 1+int(cuts[i%len(cuts)]))
					}
					if _, err := c.Write(rest[:k]); err != nil {
						return err
					}
					rest = rest[k:]
				}
				return nil
			}()
		}()
		d := &detect.Detector{GRPC: detect.GRPCActive, GRPCWait: time.Millisecond, MaxPeek: len(http2.ClientPreface) + int(peek)}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, conn, err := d.Detect(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		bounded(conn)
		var got []byte
		for i := 0; ; i++ {
			n := 64 << 10
			if len(reads) > 0 {
				n = 1 + int(reads[i%len(reads)])
			}
			p := make([]byte, n)
			k, err := conn.Read(p)
			got = append(got, p[:k]...)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := recv(t, wrote, "the client's writes"); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("read back %d bytes, want %d (sent %d)", len(got), len(want), len(in))
		}
	})
}

// stuckConn returns its bytes, then (0, nil) from every Read.
type stuckConn struct {
	memConn
}

func (c *stuckConn) Read(p []byte) (int, error) {
	n, _ := c.r.Read(p)
	return n, nil
}

// A connection whose Read keeps returning no bytes and no error cannot spin
// the ACK filter forever: it reports io.ErrNoProgress.
func TestGRPCActiveFilterNoProgress(t *testing.T) {
	c := &stuckConn{}
	c.r.Reset([]byte(http2.ClientPreface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"))
	d := &detect.Detector{GRPC: detect.GRPCActive, GRPCWait: 10 * time.Millisecond}
	_, conn, err := d.Detect(context.Background(), c)
	assert.ErrorIs(t, err, detect.ErrNoProgress, "detection itself gives up on the stuck reads")
	require.NotNil(t, conn)
	got := make([]byte, 64)
	n, err := io.ReadFull(conn, got[:33])
	require.NoError(t, err, "the consumed bytes are replayed")
	assert.Equal(t, http2.ClientPreface+"\x00\x00\x00\x04\x00\x00\x00\x00\x00", string(got[:n]))
	n, err = conn.Read(got)
	assert.Zero(t, n)
	assert.ErrorIs(t, err, io.ErrNoProgress, "the filter gives up too instead of spinning")
}
