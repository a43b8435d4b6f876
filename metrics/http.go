package metrics

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sniffsplice/sniff/opaque"
)

// DefaultMaxAuthorities and DefaultMaxRoutes cap the authority and route labels of HTTP metrics
// when HTTPOptions sets no cap.
const (
	DefaultMaxAuthorities = 100
	DefaultMaxRoutes      = 100
)

// HTTPOptions configures the HTTP metrics of one middleware or RoundTripper. The zero value labels
// requests as inbound, by authority (capped at DefaultMaxAuthorities distinct values, later ones
// counted as "other"), without a route.
type HTTPOptions struct {
	Direction opaque.Direction

	// Authorities, when not empty, is the allow-list of authority label values: a request whose
	// authority (host[:port]) or host matches an entry, case-insensitively, is labelled with that
	// entry; any other is labelled "other".
	Authorities []string
	// MaxAuthorities caps the distinct authority values when Authorities is empty (0:
	// DefaultMaxAuthorities). Negative: no authority label ("").
	MaxAuthorities int

	// Route, if set, names a request's route (e.g. a path template such as "/users/{id}", or a gRPC
	// method); the value becomes the route label, capped at MaxRoutes distinct values. Never return
	// raw paths with ids.
	Route func(*http.Request) string
	// MaxRoutes caps distinct route values (0: DefaultMaxRoutes).
	MaxRoutes int
}

type httpReqKey struct {
	dir       opaque.Direction
	authority string
	route     string
}

type httpRespKey struct {
	httpReqKey
	status  uint16 // 0: no response
	grpc    int16  // grpcNone, grpcOther or the code
	failure bool
}

const (
	grpcNone  = -1
	grpcOther = -2
	grpcMax   = 63
)

func grpcLabel(g int16) string {
	switch {
	case g == grpcNone:
		return ""
	case g < 0:
		return Other
	}
	return strconv.Itoa(int(g))
}

func classLabel(failure bool) string {
	if failure {
		return "failure"
	}
	return "success"
}

// parseGRPC turns a grpc-status value into its label code.
func parseGRPC(v string) int16 {
	if v == "" {
		return grpcNone
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 || n > grpcMax {
		return grpcOther
	}
	return int16(n)
}

// classify follows Linkerd's default response classes: a gRPC response is a failure unless
// grpc-status is 0; an HTTP response is a failure when it is a 5xx or missing.
func classify(status int, grpc int16) bool {
	if grpc != grpcNone {
		return grpc != 0
	}
	return status == 0 || status >= 500
}

// httpLabeler resolves the bounded labels of one middleware or RoundTripper.
type httpLabeler struct {
	o       HTTPOptions
	maxAuth int
	maxRt   int
	auths   cappedSet
	routes  cappedSet
}

func newHTTPLabeler(o HTTPOptions) *httpLabeler {
	l := &httpLabeler{o: o, maxAuth: o.MaxAuthorities, maxRt: o.MaxRoutes}
	l.o.Direction = norm(o.Direction)
	l.o.Authorities = append([]string(nil), o.Authorities...)
	if l.maxAuth == 0 {
		l.maxAuth = DefaultMaxAuthorities
	}
	if l.maxRt <= 0 {
		l.maxRt = DefaultMaxRoutes
	}
	return l
}

func (l *httpLabeler) key(req *http.Request, authority string) httpReqKey {
	k := httpReqKey{dir: l.o.Direction}
	switch {
	case len(l.o.Authorities) > 0:
		k.authority = Other
		host := authority
		if h, _, err := net.SplitHostPort(authority); err == nil {
			host = h
		}
		for _, a := range l.o.Authorities {
			if strings.EqualFold(a, authority) || strings.EqualFold(a, host) {
				k.authority = a
				break
			}
		}
	case l.maxAuth > 0:
		if hasUpper(authority) {
			authority = strings.ToLower(authority)
		}
		k.authority = l.auths.intern(authority, l.maxAuth)
	}
	if l.o.Route != nil {
		k.route = l.routes.intern(l.o.Route(req), l.maxRt)
	}
	return k
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

func (r *Registry) countRequest(k httpReqKey) {
	r.httpReqs.getOrCreate(k).n.Add(1)
}

func (r *Registry) countResponse(k httpReqKey, status int, grpc int16, failure bool, latency time.Duration) {
	if status < 0 || status > 999 {
		status = 0
	}
	rk := httpRespKey{httpReqKey: k, status: uint16(status), grpc: grpc, failure: failure}
	r.httpResps.getOrCreate(rk).observe(latencyBounds, latency)
}

// ObserveHTTPError counts a request that an HTTP server refused before any handler saw it, and the
// error response the server wrote for it: net/http answers a malformed request with 400, oversized
// headers with 431, an unsupported transfer coding with 501 and an unknown Expect with 417, all
// without calling its Handler, so HTTPHandler cannot count them. It adds one to request_total and
// to response_total{classification="failure", status_code} (with latency, the time from the
// request's first byte to the response, in response_latency_seconds), with empty authority, route
// and grpc_status labels: no request was parsed to take them from. The class is failure whatever
// the status, so the server's own refusals are told apart from an application's 4xx answers
// (success, as Linkerd classifies them). A status outside 100..999 is counted as 0 (no status).
func (r *Registry) ObserveHTTPError(dir opaque.Direction, status int, latency time.Duration) {
	if r == nil {
		return
	}
	k := httpReqKey{dir: norm(dir)}
	r.countRequest(k)
	if status < 100 {
		status = 0
	}
	r.countResponse(k, status, grpcNone, true, latency)
}

// HTTPHandler wraps h so that every request it serves is counted: request_total when it arrives;
// response_total{classification, status_code, grpc_status} and response_latency_seconds (time to
// the response headers) when h returns. grpc-status is read from the response headers or trailers h
// set (grpc-go's ServeHTTP and httputil.ReverseProxy both set it there). A handler that panics is
// counted as a failure. A hijacked connection (WebSocket, CONNECT) is counted as a success with the
// status written before the hijack, if any.
//
// The ResponseWriter given to h implements http.Flusher, http.Hijacker and io.ReaderFrom by
// delegating to the server's writer (Hijack fails with http.ErrNotSupported where the server's
// writer cannot hijack, as for HTTP/2), and Unwrap for http.ResponseController.
//
// A nil Registry returns h itself.
func (r *Registry) HTTPHandler(h http.Handler, o HTTPOptions) http.Handler {
	if r == nil {
		return h
	}
	return &handler{r: r, next: h, l: newHTTPLabeler(o)}
}

type handler struct {
	r    *Registry
	next http.Handler
	l    *httpLabeler
}

// ServeHTTP counts the request, serves it and counts the response.
func (h *handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	k := h.l.key(req, req.Host)
	h.r.countRequest(k)
	rw := &respWriter{w: w, start: start}
	done := false
	defer func() {
		if !done { // h.next panicked
			lat := rw.latency()
			h.r.countResponse(k, rw.status, grpcNone, true, lat)
		}
	}()
	h.next.ServeHTTP(rw, req)
	done = true
	status := rw.status
	if status == 0 && !rw.hijacked {
		status = http.StatusOK // net/http's implicit status
	}
	grpc := grpcFromHeader(w.Header())
	failure := classify(status, grpc)
	if rw.hijacked {
		failure = false
	}
	h.r.countResponse(k, status, grpc, failure, rw.latency())
}

// grpcFromHeader finds grpc-status in a handler's header map, set either directly (declared
// trailer, trailers-only response) or with http.TrailerPrefix.
func grpcFromHeader(hd http.Header) int16 {
	if v := hd.Get("Grpc-Status"); v != "" {
		return parseGRPC(v)
	}
	for key, vs := range hd {
		if len(vs) > 0 && len(key) > len(http.TrailerPrefix) &&
			strings.HasPrefix(key, http.TrailerPrefix) &&
			strings.EqualFold(key[len(http.TrailerPrefix):], "Grpc-Status") {
			return parseGRPC(vs[0])
		}
	}
	return grpcNone
}

// respWriter records the status and the time of the response headers.
type respWriter struct {
	w        http.ResponseWriter
	start    time.Time
	headerAt time.Time
	status   int
	hijacked bool
}

func (rw *respWriter) latency() time.Duration {
	if rw.headerAt.IsZero() {
		return time.Since(rw.start)
	}
	return rw.headerAt.Sub(rw.start)
}

// Header returns the server's header map.
func (rw *respWriter) Header() http.Header { return rw.w.Header() }

// WriteHeader records the final status and when it was written.
func (rw *respWriter) WriteHeader(code int) {
	// 1xx other than 101 are informational: the final status follows.
	if rw.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		rw.status = code
		rw.headerAt = time.Now()
	}
	rw.w.WriteHeader(code)
}

func (rw *respWriter) markWrite() {
	if rw.status == 0 {
		rw.status = http.StatusOK
		rw.headerAt = time.Now()
	}
}

// Write writes body bytes (an implicit 200 if no status was written).
func (rw *respWriter) Write(b []byte) (int, error) {
	rw.markWrite()
	return rw.w.Write(b)
}

// ReadFrom keeps the server's sendfile/splice path for io.Copy.
func (rw *respWriter) ReadFrom(src io.Reader) (int64, error) {
	rw.markWrite()
	if rf, ok := rw.w.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(writerOnly{rw.w}, src)
}

type writerOnly struct{ io.Writer }

// Flush sends buffered data to the client (http.Flusher).
func (rw *respWriter) Flush() {
	rw.markWrite()
	if f, ok := rw.w.(http.Flusher); ok {
		f.Flush()
		return
	}
	_ = http.NewResponseController(rw.w).Flush() // a writer that only unwraps to a Flusher
}

// Hijack hands over the connection (http.Hijacker).
func (rw *respWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(rw.w).Hijack()
	if err == nil {
		rw.hijacked = true
		if rw.headerAt.IsZero() {
			rw.headerAt = time.Now()
		}
	}
	return c, brw, err
}

// Unwrap returns the server's ResponseWriter (for http.ResponseController).
func (rw *respWriter) Unwrap() http.ResponseWriter { return rw.w }

// RoundTripper wraps rt (nil: http.DefaultTransport) so that every request it sends is counted:
// request_total when sent; response_total and response_latency_seconds (time to the response
// headers) when the response ends — when its body reaches EOF or fails, or is closed — so
// grpc-status can be read from the trailers. Errors without a response count as failures with no
// status code. The caller must close response bodies, as with any RoundTripper; 101 Switching
// Protocols and bodiless responses are counted at once and their bodies are left unwrapped.
//
// A nil Registry returns rt itself.
func (r *Registry) RoundTripper(rt http.RoundTripper, o HTTPOptions) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	if r == nil {
		return rt
	}
	return &roundTripper{r: r, next: rt, l: newHTTPLabeler(o)}
}

type roundTripper struct {
	r    *Registry
	next http.RoundTripper
	l    *httpLabeler
}

// RoundTrip counts the request, sends it, and arranges for the response to be counted when its body
// ends.
func (t *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	authority := req.Host
	if authority == "" && req.URL != nil {
		authority = req.URL.Host
	}
	k := t.l.key(req, authority)
	t.r.countRequest(k)
	resp, err := t.next.RoundTrip(req)
	lat := time.Since(start)
	if err != nil {
		t.r.countResponse(k, 0, grpcNone, true, lat)
		return resp, err
	}
	grpc := grpcFromHeader(resp.Header)
	if resp.StatusCode == http.StatusSwitchingProtocols || resp.Body == nil || resp.Body == http.NoBody {
		t.r.countResponse(k, resp.StatusCode, grpc, classify(resp.StatusCode, grpc), lat)
		return resp, nil
	}
	resp.Body = &trackedBody{rc: resp.Body, r: t.r, k: k, resp: resp, grpc: grpc, lat: lat}
	return resp, nil
}

// trackedBody counts the response when its body ends.
type trackedBody struct {
	rc   io.ReadCloser
	r    *Registry
	k    httpReqKey
	resp *http.Response
	grpc int16
	lat  time.Duration
	once sync.Once
}

// Read reads the body; an error or EOF ends the response.
func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		b.finish(err)
	}
	return n, err
}

// Close closes the body and ends the response if it has not ended.
func (b *trackedBody) Close() error {
	err := b.rc.Close()
	b.finish(nil)
	return err
}

func (b *trackedBody) finish(err error) {
	b.once.Do(func() {
		grpc := b.grpc
		if grpc == grpcNone && b.resp.Trailer != nil {
			grpc = parseGRPC(b.resp.Trailer.Get("Grpc-Status"))
		}
		failure := classify(b.resp.StatusCode, grpc)
		if err != nil && !errors.Is(err, io.EOF) {
			failure = true // the stream broke (reset, timeout)
		}
		b.r.countResponse(b.k, b.resp.StatusCode, grpc, failure, b.lat)
	})
}
