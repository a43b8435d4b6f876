package proxy

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Responses net/http writes without a handler.
//
// net/http answers some requests before any Handler runs, writing straight
// to the net.Conn it accepted: a malformed request (400, or another 4xx/5xx
// net/http names, e.g. 505 for an unsupported version), headers over
// MaxHeaderBytes (431), an unsupported transfer coding (501), an Expect
// other than 100-continue (417); and it closes without a word a connection
// whose request headers did not arrive within ReadHeaderTimeout, which
// countingConn.Close answers with 408. The metrics middleware never sees those
// requests. serverErrors watches the accepted connection instead: a write
// that starts with an HTTP/1 status line while no handler owns the
// connection is one of those answers, and is counted with
// metrics.Registry.ObserveHTTPError.
//
// "No handler owns the connection" is exact for HTTP/1, where net/http runs
// one request at a time: the connection is owned from the moment the
// outermost handler is entered (mark) until net/http reports StateIdle,
// which it does only after the handler returned and its response was
// flushed; a hijacked connection stays owned for good. An HTTP/2 (h2c)
// connection is never watched: net/http answers no HTTP/1 there, and a
// frame payload could start a write with any bytes. It is recognised by the
// client preface, which net/http reads before it writes anything.
type serverErrors struct {
	// off: nothing more to watch (HTTP/2, hijacked, or closed); the fast
	// path of every Read and Write.
	off     atomic.Bool
	observe func(status int, latency time.Duration)

	mu       sync.Mutex
	preface  int  // bytes of the HTTP/2 client preface matched so far; -1: not HTTP/2
	owned    bool // a handler (or a hijacker) owns the connection
	reqStart time.Time
	timedOut bool // a begun request's headers did not arrive in time
}

// requestTimeout is written to a client whose request headers did not
// arrive within the server's ReadHeaderTimeout, in net/http's own format.
const requestTimeout = "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: 19\r\n\r\n408 Request Timeout"

const http2ClientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func newServerErrors(observe func(status int, latency time.Duration)) *serverErrors {
	return &serverErrors{observe: observe}
}

// read notes bytes read from the client: the preface check, and the arrival
// of a request that no handler has taken yet.
func (s *serverErrors) read(b []byte) {
	if len(b) == 0 || s.off.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.preface >= 0 {
		n := min(len(b), len(http2ClientPreface)-s.preface)
		switch {
		case string(b[:n]) != http2ClientPreface[s.preface:s.preface+n]:
			s.preface = -1
		case s.preface+n == len(http2ClientPreface):
			s.off.Store(true) // HTTP/2
			return
		default:
			s.preface += n
		}
	}
	if !s.owned && s.reqStart.IsZero() {
		s.reqStart = time.Now()
	}
}

// write counts b if it is a response net/http wrote on its own.
func (s *serverErrors) write(b []byte) {
	if s.off.Load() {
		return
	}
	status, ok := statusLine(b)
	if !ok {
		return
	}
	s.mu.Lock()
	if s.owned {
		s.mu.Unlock()
		return
	}
	var lat time.Duration
	if !s.reqStart.IsZero() {
		lat = time.Since(s.reqStart)
	}
	s.reqStart = time.Time{}
	s.mu.Unlock()
	s.observe(status, lat)
}

// readTimedOut notes a read deadline: net/http is giving up on the
// connection. A request begun and unanswered is owed a 408.
func (s *serverErrors) readTimedOut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.off.Load() && !s.owned && !s.reqStart.IsZero() {
		s.timedOut = true
	}
}

// takeTimeout reports (once) whether a 408 is owed.
func (s *serverErrors) takeTimeout() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.timedOut
	s.timedOut = false
	return t && !s.off.Load()
}

// mark wraps the server's handler: the connection is owned while it runs.
func (s *serverErrors) mark(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.owned = true
		s.reqStart = time.Time{}
		s.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// connState is the server's ConnState hook.
func (s *serverErrors) connState(state http.ConnState) {
	switch state {
	case http.StateIdle: // the last response is flushed
		s.mu.Lock()
		s.owned = false
		s.reqStart = time.Time{}
		s.mu.Unlock()
	case http.StateHijacked, http.StateClosed:
		s.off.Store(true)
	}
}

// statusLine parses the "HTTP/1.x NNN " that starts a response.
func statusLine(b []byte) (int, bool) {
	if len(b) < 13 || string(b[:7]) != "HTTP/1." || (b[7] != '0' && b[7] != '1') || b[8] != ' ' || b[12] != ' ' {
		return 0, false
	}
	n := 0
	for _, c := range b[9:12] {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
