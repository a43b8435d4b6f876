package accept_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sniffsplice/sniff/accept"
	"github.com/sniffsplice/sniff/internal/testnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBackoff(t *testing.T) {
	var b accept.Backoff
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	for i, w := range want {
		assert.Equal(t, w*time.Millisecond, b.Next(), "wait %d", i)
	}
	b.Reset()
	assert.Equal(t, accept.MinDelay, b.Next(), "after Reset")
}

func TestTemporary(t *testing.T) {
	opErr := func(e error) error {
		return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", e)}
	}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{opErr(syscall.EMFILE), true},
		{opErr(syscall.ENFILE), true},
		{opErr(syscall.ENOBUFS), true},
		{opErr(syscall.ENOMEM), true},
		{opErr(syscall.ECONNABORTED), true},
		{opErr(syscall.EINTR), true},
		{fmt.Errorf("wrapped: %w", syscall.EMFILE), true},
		{opErr(os.ErrDeadlineExceeded), true},
		{opErr(net.ErrClosed), false},
		{opErr(syscall.EBADF), false},
		{opErr(syscall.EINVAL), false},
		{errors.New("other"), false},
		{nil, false},
	} {
		assert.Equal(t, tc.want, accept.Temporary(tc.err), "%v", tc.err)
	}
}

// scripted is a listener whose Accept returns the scripted errors in turn, then connections
// from conns, then blocks until Close.
type scripted struct {
	mu     sync.Mutex
	errs   []error
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newScripted(errs ...error) *scripted {
	return &scripted{errs: errs, conns: make(chan net.Conn, 4), closed: make(chan struct{})}
}

func (l *scripted) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *scripted) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *scripted) Addr() net.Addr { return &net.TCPAddr{} }

// TestServeBacksOff: failures that pass are waited out with the doubling back-off and serving
// goes on; the first success resets the back-off.
func TestServeBacksOff(t *testing.T) {
	emfile := &net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	ln := newScripted(emfile, emfile, emfile)
	a, b := net.Pipe()
	defer b.Close()
	ln.conns <- a
	var mu sync.Mutex
	var waits []time.Duration
	got := make(chan net.Conn, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- accept.Loop{OnTemporary: func(err error, wait time.Duration) {
			assert.ErrorIs(t, err, syscall.EMFILE)
			mu.Lock()
			waits = append(waits, wait)
			mu.Unlock()
		}}.Serve(ctx, ln, func(c net.Conn) { got <- c })
	}()
	c := testnet.Recv(t, got, "the connection after three EMFILEs")
	elapsed := time.Since(start)
	c.Close()
	mu.Lock()
	assert.Equal(t, []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond}, waits)
	mu.Unlock()
	assert.GreaterOrEqual(t, elapsed, 35*time.Millisecond, "the waits were waited")

	// The next failure starts from MinDelay again.
	ln.mu.Lock()
	ln.errs = []error{emfile}
	ln.mu.Unlock()
	a2, b2 := net.Pipe()
	defer b2.Close()
	ln.conns <- a2
	testnet.Recv(t, got, "the connection after one more EMFILE").Close()
	cancel()
	assert.ErrorIs(t, testnet.Recv(t, done, "Serve to return"), context.Canceled)
	mu.Lock()
	assert.Equal(t, 5*time.Millisecond, waits[len(waits)-1], "reset after a success")
	mu.Unlock()
}

// TestServePermanentError: a failure that does not pass ends Serve with it, and the listener
// is closed.
func TestServePermanentError(t *testing.T) {
	boom := errors.New("boom")
	ln := newScripted(boom)
	err := accept.Serve(context.Background(), ln, func(c net.Conn) { c.Close() })
	assert.ErrorIs(t, err, boom)
	select {
	case <-ln.closed:
	default:
		t.Fatal("Serve returned without closing the listener")
	}
}

// TestServeCancel: cancelling ctx ends a blocked Accept on a real listener at once.
func TestServeCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- accept.Serve(ctx, ln, func(c net.Conn) { c.Close() }) }()
	time.Sleep(10 * time.Millisecond) // let it block in Accept
	cancel()
	assert.ErrorIs(t, testnet.Recv(t, done, "Serve to return"), context.Canceled)
	_, err = net.Dial("tcp", ln.Addr().String())
	assert.Error(t, err, "the listener is closed")
}

// TestServeCancelDuringBackoff: a cancel during a back-off wait ends Serve without waiting it
// out.
func TestServeCancelDuringBackoff(t *testing.T) {
	errs := make([]error, 20)
	for i := range errs {
		errs[i] = &net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.ENFILE)}
	}
	ln := newScripted(errs...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	waited := make(chan time.Duration, 20)
	go func() {
		done <- accept.Loop{OnTemporary: func(_ error, w time.Duration) { waited <- w }}.Serve(ctx, ln, func(c net.Conn) {})
	}()
	for {
		if w := testnet.Recv(t, waited, "a back-off"); w >= 320*time.Millisecond {
			break
		}
	}
	start := time.Now()
	cancel()
	assert.ErrorIs(t, testnet.Recv(t, done, "Serve to return"), context.Canceled)
	assert.Less(t, time.Since(start), 300*time.Millisecond, "the 320 ms wait was cut short")
}
