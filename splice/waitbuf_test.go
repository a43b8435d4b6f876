package splice

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/sniffsplice/sniff/internal/testnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTLSWaitBuffer: a TLS direction waits in a WaitBufferSize buffer
// (DefaultTLSWaitBufferSize by default): after bulk both ways and a pause,
// the join holds one such buffer per direction, not a larger one; a stream
// does not switch buffers per record (a handful of checkouts per megabyte);
// a message larger than the wait buffer arrives whole and in order; and with
// WaitBufferSize at BufferSize the join holds one BufferSize buffer per
// direction for its life, as before WaitBufferSize existed.
func TestTLSWaitBuffer(t *testing.T) {
	for _, tc := range []struct {
		name string
		j    Joiner
		held int64 // bytes of buffers held per idle direction
	}{
		{"default", Joiner{}, DefaultTLSWaitBufferSize},
		{"4 KiB", Joiner{WaitBufferSize: 3000}, 4 << 10},
		{"held for life", Joiner{WaitBufferSize: DefaultBufferSize}, DefaultBufferSize},
		{"above BufferSize", Joiner{WaitBufferSize: 1 << 20, BufferSize: 64 << 10}, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := tc.j
			j.hooks = &hooks{}
			var obs counter
			e := newEnv(t, trTLS, &j, context.Background(), &obs)
			h := j.hooks
			idleHeld := func() bool { return h.buffersOut.Load() == 2 && h.bytesOut.Load() == 2*tc.held }
			require.Eventually(t, idleHeld, 10*time.Second, time.Millisecond,
				"idle at the start: %d buffers, %d bytes held", h.buffersOut.Load(), h.bytesOut.Load())

			// Bulk both ways (past crypto/tls's dynamic record sizing: from
			// 128 KB on, its records are full).
			const bulk = 4 << 20
			stream := func(from, to io.ReadWriter) <-chan error {
				done := make(chan error, 2)
				go func() {
					_, err := io.CopyN(io.Discard, to, bulk)
					done <- err
				}()
				go func() {
					msg := make([]byte, 64<<10)
					for sent := 0; sent < bulk; sent += len(msg) {
						if _, err := from.Write(msg); err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
				return done
			}
			both := func() int64 {
				gets := h.bufferGets.Load()
				up, down := stream(e.client, e.server), stream(e.server, e.client)
				for range 2 {
					require.NoError(t, <-up)
					require.NoError(t, <-down)
				}
				return h.bufferGets.Load() - gets
			}
			// A relay that went back to the wait buffer after every record
			// would check out two buffers per 16 KiB each way: 1,024 per
			// 4 MiB. The first stream's records grow from about 1 KiB to
			// 16 over its first 128 KB (crypto/tls's dynamic record
			// sizing): some switches there; none once they are full.
			assert.LessOrEqual(t, both(), int64(64), "buffer checkouts for the first 4 MiB each way")
			assert.LessOrEqual(t, both(), int64(4), "buffer checkouts for the next 4 MiB each way")
			// The streams ended on a full record: each direction may wait in
			// its larger buffer until a shorter message goes through.
			for _, c := range [][2]io.ReadWriter{{e.client, e.server}, {e.server, e.client}} {
				_, err := c[0].Write([]byte{1})
				require.NoError(t, err)
				_, err = io.ReadFull(c[1], make([]byte, 1))
				require.NoError(t, err)
			}
			require.Eventually(t, idleHeld, 10*time.Second, time.Millisecond,
				"idle after the streams: %d buffers, %d bytes held", h.buffersOut.Load(), h.bytesOut.Load())

			// Messages of every size around the buffers' edges, each after
			// a pause, arrive whole, in order. One that ends a full record
			// may leave the direction waiting in the larger buffer; the
			// next message that does not gives it back. One that fills the
			// wait buffer exactly does not: what crypto/tls holds is taken
			// without waiting, and there is nothing.
			for _, n := range []int{1, 4095, 4096, 4097, 8192, 16383, 16384, 16385, 32768, 40000, 100} {
				out := make([]byte, n)
				for i := range out {
					out[i] = byte(i*7 + n)
				}
				_, err := e.server.Write(out)
				require.NoError(t, err)
				in := make([]byte, n)
				_, err = io.ReadFull(e.client, in)
				require.NoError(t, err)
				require.Equal(t, out, in, "%d-byte message", n)
				if n%maxRecord == 0 && tc.held < int64(size(j.BufferSize, DefaultBufferSize)) {
					continue
				}
				require.Eventually(t, idleHeld, 10*time.Second, time.Millisecond,
					"idle after a %d-byte message: %d buffers, %d bytes held", n, h.buffersOut.Load(), h.bytesOut.Load())
			}

			// A direction that reads a *tls.Conn never holds more than one
			// record's plaintext, or its wait buffer if larger (crypto/tls
			// returns no more per Read), and the wait buffer for the moment
			// its bytes are copied into the larger one (whether both
			// directions were at that moment at once is timing).
			record := max(tc.held, min(int64(size(j.BufferSize, DefaultBufferSize)), maxRecord))
			peak := record
			if tc.held < record {
				peak += tc.held
			}
			assert.GreaterOrEqual(t, h.peakBytesOut.Load(), 2*record, "the most both directions held at once")
			assert.LessOrEqual(t, h.peakBytesOut.Load(), 2*peak, "the most both directions held at once")

			closeWrite(t, e.client)
			closeWrite(t, e.server)
			r := e.wait(t)
			require.NoError(t, r.err)
			assertIdle(t, h)
			assert.Equal(t, r.st.AToB, obs.n[AToB].Load(), "observer saw every byte a->b")
			assert.Equal(t, r.st.BToA, obs.n[BToA].Load(), "observer saw every byte b->a")
			assert.Zero(t, obs.zero[AToB].Load()+obs.zero[BToA].Load(), "observer calls that reported no bytes")
		})
	}
}

// BenchmarkTLSPingPong measures a request/response exchange of size bytes
// each way through Join between two TLS connections, side by side: wait (the
// default: a direction waits in DefaultTLSWaitBufferSize and takes a longer
// message's rest from crypto/tls's memory), wait16k (WaitBufferSize one
// record: the default before DefaultTLSWaitBufferSize, one Read per
// message) and held (one BufferSize buffer for the life of each direction,
// WaitBufferSize at BufferSize). What a smaller wait buffer buys is idle
// memory (TestTLSWaitBuffer); what it may cost, a message over it, shows
// here.
func BenchmarkTLSPingPong(b *testing.B) {
	for _, size := range []int{128, 2 << 10, 8 << 10, 16 << 10, 64 << 10} {
		for _, mode := range []string{"wait", "wait16k", "held"} {
			b.Run(fmt.Sprintf("%s/%d", mode, size), func(b *testing.B) {
				var j Joiner
				switch mode {
				case "wait16k":
					j.WaitBufferSize = 16 << 10
				case "held":
					j.WaitBufferSize = DefaultBufferSize
				}
				e := newEnv(b, trTLS, &j, context.Background(), nil)
				go testnet.EchoMessages(e.server, size)
				msg := make([]byte, size)
				b.SetBytes(int64(2 * size))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if _, err := e.client.Write(msg); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(e.client, msg); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				closeWrite(b, e.client)
				closeWrite(b, e.server)
				e.wait(b)
			})
		}
	}
}

// TestLoopTLSWaitBuffer: the TLS joins a Loop hands to Joiner.Join wait in
// the Loop's WaitBufferSize.
func TestLoopTLSWaitBuffer(t *testing.T) {
	l := &Loop{WaitBufferSize: 4 << 10, hooks: &hooks{}}
	t.Cleanup(func() { l.Close() })
	e := newEnvLoop(t, trTLS, l, context.Background(), nil)
	h := l.hooks
	require.Eventually(t, func() bool { return h.buffersOut.Load() == 2 && h.bytesOut.Load() == 2*4<<10 }, 10*time.Second, time.Millisecond,
		"idle: %d buffers, %d bytes held", h.buffersOut.Load(), h.bytesOut.Load())
	closeWrite(t, e.client)
	closeWrite(t, e.server)
	require.NoError(t, e.wait(t).err)
}

// TestTLSDeadlineBeforeJoin: a read deadline left on a *tls.Conn before Join
// does not end the join when it passes: the join owns the connection's reads
// (it uses the deadline itself to take what crypto/tls holds).
func TestTLSDeadlineBeforeJoin(t *testing.T) {
	var j Joiner
	const before = 100 * time.Millisecond
	e := newEnvWith(t, trTLS, func(a, b net.Conn, out chan<- joinOut) {
		require.NoError(t, a.SetReadDeadline(time.Now().Add(before)))
		require.NoError(t, b.SetReadDeadline(time.Now().Add(before)))
		go func() {
			st, err := j.Join(context.Background(), a, b, nil)
			out <- joinOut{st, err}
		}()
	})
	time.Sleep(3 * before)
	for _, c := range [][2]io.ReadWriter{{e.client, e.server}, {e.server, e.client}} {
		msg := []byte("after the deadline")
		_, err := c[0].Write(msg)
		require.NoError(t, err)
		got := make([]byte, len(msg))
		_, err = io.ReadFull(c[1], got)
		require.NoError(t, err)
		require.Equal(t, msg, got)
	}
	closeWrite(t, e.client)
	closeWrite(t, e.server)
	require.NoError(t, e.wait(t).err)
}
