package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type observed struct {
	status int
	lat    time.Duration
}

func watch() (*serverErrors, *[]observed) {
	var got []observed
	return newServerErrors(func(status int, lat time.Duration) { got = append(got, observed{status, lat}) }), &got
}

const badRequest = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"

// TestServerErrorsHTTP1: a status line written while no handler owns the
// connection is counted once, with the time since the request's first byte;
// one written by a handler, or before its response is flushed (until
// StateIdle), is not.
func TestServerErrorsHTTP1(t *testing.T) {
	s, got := watch()
	s.read([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	s.connState(http.StateActive)
	h := s.mark(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	s.write([]byte(badRequest)) // net/http flushing the handler's response after it returned
	require.Empty(t, *got)

	s.connState(http.StateIdle)
	s.read([]byte("GET / HTTP/1.1\r\n"))
	time.Sleep(time.Millisecond)
	s.read([]byte("Host x\r\n\r\n"))
	s.connState(http.StateActive)
	s.write([]byte(badRequest))
	require.Len(t, *got, 1)
	require.Equal(t, 400, (*got)[0].status)
	require.GreaterOrEqual(t, (*got)[0].lat, time.Millisecond, "from the request's first byte")

	s.write([]byte("400 Bad Request")) // not a status line
	s.connState(http.StateClosed)
	s.write([]byte(badRequest)) // closed: nothing more is watched
	require.Len(t, *got, 1)
}

// TestServerErrorsHijacked: after a hijack the connection carries a tunnel,
// whose bytes may look like anything.
func TestServerErrorsHijacked(t *testing.T) {
	s, got := watch()
	s.read([]byte("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"))
	s.mark(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).
		ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	s.connState(http.StateHijacked)
	s.connState(http.StateIdle) // (net/http does not; the hijack is final anyway)
	s.write([]byte(badRequest))
	require.Empty(t, *got)
}

// TestServerErrorsHTTP2: a connection that starts with the HTTP/2 client
// preface (in any number of reads) is not watched; one that starts like it
// and then differs is HTTP/1.
func TestServerErrorsHTTP2(t *testing.T) {
	s, got := watch()
	s.read([]byte(http2ClientPreface[:3]))
	s.read([]byte(http2ClientPreface[3:20]))
	s.write([]byte(badRequest)) // (net/http writes nothing before the whole preface)
	require.Len(t, *got, 1, "not HTTP/2 yet")
	s.read([]byte(http2ClientPreface[20:] + "\x00\x00\x00\x04"))
	require.True(t, s.off.Load())
	s.write([]byte(badRequest)) // a DATA payload at the start of a write
	require.Len(t, *got, 1)

	s, got = watch()
	s.read([]byte("PRI * HTTP/1.1\r\n\r\n"))
	s.write([]byte("HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version\r\n\r\n"))
	require.Equal(t, []int{505}, statuses(*got))
}

func statuses(o []observed) []int {
	var s []int
	for _, x := range o {
		s = append(s, x.status)
	}
	return s
}

func TestStatusLine(t *testing.T) {
	for in, want := range map[string]int{
		"HTTP/1.1 400 Bad Request\r\n":  400,
		"HTTP/1.0 431 x":                431,
		"HTTP/1.1 501 ":                 501,
		"HTTP/1.2 400 Bad Request\r\n":  -1,
		"HTTP/2 400 Bad Request\r\n":    -1,
		"HTTP/1.1 4x0 Bad Request\r\n":  -1,
		"HTTP/1.1 400":                  -1,
		"HTTP/1.1  400 Bad Request\r\n": -1,
		"\x00\x00\x08\x06\x00HTTP/1.1 ": -1,
	} {
		got, ok := statusLine([]byte(in))
		if want < 0 {
			require.False(t, ok, "%q", in)
			continue
		}
		require.True(t, ok, "%q", in)
		require.Equal(t, want, got, "%q", in)
	}
}

// TestServerErrorsTimeout: a read deadline while a request is begun and no
// handler owns the connection owes the client one 408; an idle connection
// (no byte of a request yet) or a handler's body read owes nothing.
func TestServerErrorsTimeout(t *testing.T) {
	s, got := watch()
	s.readTimedOut() // idle: nothing begun
	require.False(t, s.takeTimeout())
	s.read([]byte("GET / HTTP/1.1\r\n"))
	s.readTimedOut()
	require.True(t, s.takeTimeout())
	require.False(t, s.takeTimeout(), "once")
	s.write([]byte(requestTimeout))
	require.Equal(t, []int{408}, statuses(*got))
	st, ok := statusLine([]byte(requestTimeout))
	require.True(t, ok)
	require.Equal(t, http.StatusRequestTimeout, st)

	s, _ = watch()
	s.read([]byte("POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\n"))
	s.mark(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		s.readTimedOut() // the handler's body read timed out
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/", nil))
	require.False(t, s.takeTimeout())
}
