package splice

// End classification at its edges: Errno and endOf on every errno the
// kernel has, on io.EOF and its look-alikes, wrapped and bare. A flipped
// condition here reports a reset as a clean end (or the reverse), which
// loses the reset that should reach the other side. scripts/mutate runs
// these (TestLimits*) for each planted bug.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestLimitsErrno(t *testing.T) {
	defer boundTime(t)()
	wrap := func(err error) error {
		return &Error{Side: SideB, Op: "write", Err: &net.OpError{Op: "write", Err: os.NewSyscallError("write", err)}}
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{io.EOF, ""},
		{fmt.Errorf("read: %w", io.EOF), ""},
		{wrap(io.EOF), ""},
		{io.ErrUnexpectedEOF, "other"},
		{errors.New("EOF"), "other"},
		{syscall.Errno(0), "other"},
		{syscall.Errno(4095), "other"},
		{ErrLifetime, "other"},
		{context.DeadlineExceeded, "other"},
		{os.ErrDeadlineExceeded, "other"},
	} {
		if got := Errno(tc.err); got != tc.want {
			t.Errorf("Errno(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	// Every errno is named, bare and wrapped, and the names differ.
	names := map[string]syscall.Errno{}
	for e := syscall.Errno(1); e < 134; e++ {
		name := errnoName(e)
		want := name
		if want == "" {
			want = "other"
		}
		if got := Errno(e); got != want {
			t.Errorf("Errno(%d) = %q, want %q", int(e), got, want)
		}
		if got := Errno(wrap(e)); got != want {
			t.Errorf("Errno(wrapped %d) = %q, want %q", int(e), got, want)
		}
		if prev, dup := names[name]; dup && name != "" && name != "EAGAIN" && name != "EWOULDBLOCK" && name != "EDEADLOCK" && name != "EDEADLK" {
			t.Errorf("errno %d and %d are both %q", int(prev), int(e), name)
		}
		names[name] = e
	}
	for _, n := range []string{"ECONNRESET", "EPIPE", "ETIMEDOUT", "ECONNREFUSED", "ECONNABORTED", "EHOSTUNREACH", "ENETUNREACH"} {
		if _, ok := names[n]; !ok {
			t.Errorf("%s has no name", n)
		}
	}
}

func TestLimitsEndOf(t *testing.T) {
	defer boundTime(t)()
	for _, tc := range []struct {
		err  error
		want End
	}{
		{syscall.ECONNRESET, EndReset},
		{syscall.EPIPE, EndReset},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, EndReset},
		{fmt.Errorf("x: %w", &net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}), EndReset},
		{syscall.ECONNABORTED, EndError},
		{syscall.ETIMEDOUT, EndError},
		{syscall.ECONNREFUSED, EndError},
		{io.EOF, EndError},
		{errors.New("connection reset by peer"), EndError}, // no string matching
		{nil, EndError},
	} {
		if got := endOf(tc.err); got != tc.want {
			t.Errorf("endOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	for e := End(0); e <= EndError+1; e++ {
		if s := e.String(); s == "" || (e > EndError) != (s == "unknown") {
			t.Errorf("End(%d).String() = %q", e, s)
		}
	}
}

// boundTime makes the test binary fail at once, with every goroutine's
// stack, when a test runs past its bound: a planted bug that makes a parser
// loop then fails in seconds instead of hanging until the run's timeout.
func boundTime(t *testing.T) (stop func()) {
	const d = 60 * time.Second
	tm := time.AfterFunc(d, func() { panic(fmt.Sprintf("%s ran past %v: a parser loops", t.Name(), d)) })
	return func() { tm.Stop() }
}
