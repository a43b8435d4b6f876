package replay_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/internal/replay"
)

// shortWriter takes at most n bytes in all, then fails.
type shortWriter struct {
	bytes.Buffer
	n int
}

func (w *shortWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k, _ := w.Buffer.Write(p[:w.n])
		w.n = 0
		return k, errors.New("full")
	}
	w.n -= len(p)
	return w.Buffer.Write(p)
}

func TestReplay(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	r := replay.New(a, []byte("hello"))
	assert.Equal(t, 5, r.Buffered())
	assert.Same(t, a, r.NetConn())

	// A short write keeps what it did not take.
	w := &shortWriter{n: 2}
	n, err := r.WriteBufferedTo(w)
	require.Error(t, err)
	assert.Equal(t, int64(2), n)
	assert.Equal(t, "he", w.String())
	assert.Equal(t, 3, r.Buffered())

	p := make([]byte, 2)
	k, ok := r.Take(p)
	require.True(t, ok)
	assert.Equal(t, "ll", string(p[:k]))
	_, ok = r.Take(nil)
	assert.False(t, ok, "an empty buffer takes nothing")

	// Read gives the rest of the buffer, then the inner connection.
	go func() { _, _ = b.Write([]byte(" world")); b.Close() }()
	got, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Equal(t, "o world", string(got))
	assert.Zero(t, r.Buffered())

	// No CloseWrite on a pipe: an error wrapping errors.ErrUnsupported.
	require.ErrorIs(t, r.CloseWrite(), errors.ErrUnsupported)
	require.ErrorIs(t, r.CloseRead(), errors.ErrUnsupported)
	require.NoError(t, r.Close())
	assert.Zero(t, r.Buffered())

	empty := replay.New(a, nil)
	assert.Zero(t, empty.Buffered())
}

func TestReplayWriteTo(t *testing.T) {
	a, b := net.Pipe()
	r := replay.New(a, []byte("first "))
	go func() { _, _ = b.Write([]byte("then the conn")); b.Close() }()
	var buf bytes.Buffer
	n, err := r.WriteTo(&buf)
	require.NoError(t, err)
	assert.Equal(t, int64(len("first then the conn")), n)
	assert.Equal(t, "first then the conn", buf.String())
	a.Close()
}
