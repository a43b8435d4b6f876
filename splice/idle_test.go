package splice

import (
	"context"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSwitchSmallBulk: a direction that switches between small messages,
// bulk and idle pauses delivers every byte in order, both ways at once, and
// uses both paths.
func TestSwitchSmallBulk(t *testing.T) {
	sizes := []int{1, 100, 1000, 16<<10 - 1, 16 << 10, 16<<10 + 1, 7, 64 << 10, 1 << 20, 3, 3 << 20, 200000, 5, 4096, 8 << 20, 2}
	next := func(i int) (int, time.Duration) {
		var pause time.Duration
		if i%3 == 2 {
			pause = 2 * time.Millisecond // let the direction go idle
		}
		return sizes[i%len(sizes)], pause
	}
	total := int64(0)
	for _, s := range sizes {
		total += int64(s)
	}
	n := 3 * total
	for _, tr := range []transport{trTCP, trDetect, trTLS} {
		t.Run(string(tr), func(t *testing.T) {
			j := &Joiner{hooks: &hooks{}}
			e := newEnv(t, tr, j, context.Background(), nil)
			exchangeSchedule(t, e.client, e.server, n, next)
			r := e.wait(t)
			require.NoError(t, r.err)
			assert.Equal(t, n, r.st.BToA)
			t.Logf("%s: %d spliced in %d calls, %d through buffers", tr,
				j.hooks.splicedBytes.Load(), j.hooks.spliceCalls.Load(), j.hooks.smallBytes.Load())
			if tr != trTLS {
				assert.Positive(t, j.hooks.spliceCalls.Load(), "bulk went through splice")
			}
			assert.Positive(t, j.hooks.smallBytes.Load(), "small messages went through the buffer")
			assert.Zero(t, j.hooks.buffersOut.Load())
		})
	}
}

// TestIdleHoldsNothing: joined TCP connections that moved bulk and small
// traffic and then went idle hold no pooled buffer and no splice pipe; the
// process holds only the sockets. A bare io.Copy relay is measured beside
// it for comparison.
func TestIdleHoldsNothing(t *testing.T) {
	const n = 50
	// Pipes open before (the test binary's own stdout, say).
	var basePipes, baseAll int
	eventually(10*time.Second, func() bool {
		runtime.GC()
		a, p := countFDs(t)
		if p == basePipes && a == baseAll {
			return true
		}
		basePipes, baseAll = p, a
		return false
	})
	j := &Joiner{hooks: &hooks{}}
	envs := make([]*env, n)
	for i := range envs {
		e := newEnv(t, trTCP, j, context.Background(), nil)
		envs[i] = e
		// Bulk both ways (spliced), then a small message each way.
		exchangeOpen(t, e.client, e.server, 2<<20)
		exchangeOpen(t, e.client, e.server, 10)
	}
	require.True(t, eventually(10*time.Second, func() bool {
		return j.hooks.buffersOut.Load() == 0 && j.hooks.splicing.Load() == 0
	}), "idle joins hold %d buffers, %d splices", j.hooks.buffersOut.Load(), j.hooks.splicing.Load())

	// Pipes of finished splices sit in the runtime's pool until a GC; none
	// is held by an idle join, so they all go.
	ok := eventually(10*time.Second, func() bool {
		runtime.GC()
		_, pipes := countFDs(t)
		return pipes <= basePipes
	})
	all, pipes := countFDs(t)
	assert.True(t, ok, "%d pipe descriptors open with %d idle joins", pipes, n)
	t.Logf("this relay: %d idle joins: %d descriptors (4 sockets per pipeline in this process), %d pipes (%d before)", n, all, pipes, basePipes)
	assert.LessOrEqual(t, all-baseAll, 4*n, "descriptors: the 4 sockets of each pipeline and nothing else")
	assert.Zero(t, j.hooks.buffersOut.Load())

	for _, e := range envs {
		e.client.Close()
		e.server.Close()
		r := e.wait(t)
		_ = r
	}

	// Side by side: a bare io.Copy relay, idle after the same traffic.
	bare := make([]func(), n)
	for i := range bare {
		client, server, stop := bareRelay(t)
		exchangeOpen(t, client, server, 2<<20)
		bare[i] = func() { client.Close(); server.Close(); stop() }
	}
	time.Sleep(100 * time.Millisecond)
	runtime.GC()
	allBare, pipesBare := countFDs(t)
	t.Logf("bare io.Copy relay: %d idle joins: %d descriptors, %d pipes", n, allBare, pipesBare)
	assert.Greater(t, pipesBare, pipes)
	for _, f := range bare {
		f()
	}
}

// exchangeOpen sends size bytes each way and reads them, keeping both
// connections open.
func exchangeOpen(t testing.TB, client, server net.Conn, size int) {
	t.Helper()
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i)
	}
	errc := make(chan error, 2)
	go func() { _, err := client.Write(msg); errc <- err }()
	go func() { _, err := server.Write(msg); errc <- err }()
	got := make([]byte, size)
	_, err := io.ReadFull(server, got)
	require.NoError(t, err)
	require.Equal(t, msg, got)
	_, err = io.ReadFull(client, got)
	require.NoError(t, err)
	require.Equal(t, msg, got)
	require.NoError(t, <-errc)
	require.NoError(t, <-errc)
}

// bareRelay is the naive relay: io.Copy both ways between TCP connections.
func bareRelay(t testing.TB) (client, server net.Conn, stop func()) {
	front, back := listen(t), listen(t)
	defer front.Close()
	defer back.Close()
	acc := func(l net.Listener) chan net.Conn {
		ch := make(chan net.Conn, 1)
		go func() { c, _ := l.Accept(); ch <- c }()
		return ch
	}
	fa := acc(front)
	client, err := net.Dial("tcp", front.Addr().String())
	require.NoError(t, err)
	a := <-fa
	ba := acc(back)
	b, err := net.Dial("tcp", back.Addr().String())
	require.NoError(t, err)
	server = <-ba
	require.NotNil(t, a)
	require.NotNil(t, server)
	done := make(chan struct{}, 2)
	go func() { io.Copy(b, a); b.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(a, b); a.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	return client, server, func() { <-done; <-done; a.Close(); b.Close() }
}
