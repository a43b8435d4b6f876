package metrics_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/splice"
)

// TestHandshakeHook runs real mTLS handshakes over loopback with
// reg.HandshakeHook on both sides: one authorized client, one refused.
func TestHandshakeHook(t *testing.T) {
	reg := metrics.New(metrics.Config{PeerIdentities: true})
	ca := mtlstest.MustNew("example.org")
	srvSrc := ca.Source("/ns/prod/sa/db")
	serverTLS, err := (&mtls.Config{
		SVID: srvSrc, Bundle: srvSrc,
		Authorize:   mtls.AuthorizeID(ca.ID("/ns/prod/sa/web")),
		OnHandshake: reg.HandshakeHook(),
	}).ServerTLS()
	require.NoError(t, err)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	serverErrs := make(chan error, 2)
	go func() {
		for range 2 {
			raw, err := ln.Accept()
			if err != nil {
				serverErrs <- err
				return
			}
			c := tls.Server(raw, serverTLS)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err = mtls.Handshake(ctx, c)
			cancel()
			c.Close()
			serverErrs <- err
		}
	}()

	dial := func(id string) {
		src := ca.Source(id)
		clientTLS, err := (&mtls.Config{
			SVID: src, Bundle: src,
			Authorize:   mtls.AuthorizeID(ca.ID("/ns/prod/sa/db")),
			OnHandshake: reg.HandshakeHook(),
		}).ClientTLS()
		require.NoError(t, err)
		raw, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		c := tls.Client(raw, clientTLS)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = mtls.Handshake(ctx, c)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Read(make([]byte, 1)) // the server's refusal, or its close
	}
	dial("/ns/prod/sa/web")
	require.NoError(t, <-serverErrs)
	dial("/ns/prod/sa/intruder")
	refusal := <-serverErrs
	require.ErrorIs(t, refusal, mtls.ErrUnauthorized)

	s := reg.Snapshot()
	assert.Equal(t, []string{
		"inbound success spiffe://example.org/ns/prod/sa/web = 1",
		"inbound unauthorized spiffe://example.org/ns/prod/sa/intruder = 1",
		"outbound success spiffe://example.org/ns/prod/sa/db = 2", // both clients verified the server
	}, metrics.Rows(s, "tls_handshake_total"))
	// Server handshakes are timed; mtls reports no client duration: counted, not timed.
	assert.Equal(t, []string{"inbound success = 1", "inbound unauthorized = 1", "outbound success = 0"},
		metrics.Rows(s, "tls_handshake_duration_seconds"))

	assert.Equal(t, metrics.OutcomeSuccess, metrics.HandshakeOutcome(nil))
	assert.Equal(t, "unauthorized", metrics.HandshakeOutcome(refusal))
}

// TestHeaderObserver writes and reads real transport headers through an
// opaque.HeaderCodec observed by the registry, and rejects a bad one.
func TestHeaderObserver(t *testing.T) {
	reg := metrics.New(metrics.Config{})
	codec := opaque.HeaderCodec{Observer: reg.HeaderObserver()}
	var buf bytes.Buffer
	_, err := codec.Write(&buf, opaque.Header{Port: 8080, SessionProtocol: opaque.SessionHTTP2})
	require.NoError(t, err)
	_, err = codec.Write(&buf, opaque.Header{Port: 3306})
	require.NoError(t, err)
	h, _, err := codec.Read(&buf)
	require.NoError(t, err)
	require.Equal(t, uint16(8080), uint16(h.Port))
	_, _, err = codec.Read(&buf)
	require.NoError(t, err)
	_, _, err = codec.Read(strings.NewReader("GET / HTTP/1.1\r\n\r\n"))
	require.Error(t, err)
	_, err = codec.Write(&buf, opaque.Header{Port: 0}) // invalid: rejected on write
	require.Error(t, err)

	s := reg.Snapshot()
	assert.Equal(t, []string{"HTTP/2 = 1", "none = 1"}, metrics.Rows(s, "transport_header_written_total"))
	assert.Equal(t, []string{"HTTP/2 = 1", "none = 1"}, metrics.Rows(s, "transport_header_read_total"))
	assert.Equal(t, []string{"bad_port = 1", "no_preface = 1"}, metrics.Rows(s, "transport_header_rejected_total"))
}

// TestObservePolicy counts the decisions of the default opaque policy.
func TestObservePolicy(t *testing.T) {
	reg := metrics.New(metrics.Config{Ports: opaque.NewPortSet(3306, 8080)})
	var res opaque.Resolver // zero value: the default table
	for _, p := range []uint16{3306, 8080, 8080, 9999, 5432} {
		reg.ObservePolicy(opaque.Inbound, p, res.Resolve(opaque.Inbound, p))
	}
	reg.ObservePolicy(opaque.Outbound, 3306, res.Resolve(opaque.Outbound, 3306))
	assert.Equal(t, []string{
		"inbound detect 8080 = 2",
		"inbound detect other = 1",
		"inbound opaque 3306 = 1",
		"inbound opaque other = 1", // 5432 is opaque by default
		"outbound opaque 3306 = 1",
	}, metrics.Rows(reg.Snapshot(), "policy_decision_total"))
}

func TestNilRegistryHooks(t *testing.T) {
	var reg *metrics.Registry
	assert.Nil(t, reg.DetectHook(opaque.Inbound))
	assert.Nil(t, reg.HandshakeHook())
	assert.Nil(t, reg.HeaderObserver())
	mc := reg.OpenConn(metrics.ConnLabels{})
	assert.Nil(t, mc.Observer())
	assert.Nil(t, mc.Reversed())
	mc.End(splice.Stats{})
	reg.ObservePolicy(opaque.Inbound, 80, opaque.Decision{})
}

// TestMuxHook serves HTTP/1 through a real detect.Mux with no default
// listener: an HTTP request is routed, a binary client is unrouted.
func TestMuxHook(t *testing.T) {
	reg := metrics.New(metrics.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	d := &detect.Detector{OnResult: reg.DetectHook(opaque.Inbound)}
	m := detect.NewMux(ln, d, detect.MuxConfig{OnConn: reg.MuxHook()})
	web := m.Match(detect.HTTP1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(web) }()
	muxDone := make(chan struct{})
	go func() { defer close(muxDone); m.Serve() }()
	defer func() { m.Close(); srv.Close(); <-served; <-muxDone }()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + ln.Addr().String() + "/")
	require.NoError(t, err)
	resp.Body.Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	_, err = c.Write([]byte{0, 1, 2, 3})
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err, "the mux closes an unrouted connection")
	c.Close()

	require.Eventually(t, func() bool { return reg.Snapshot().Value("mux_connections_total") == 2 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, []string{"routed HTTP/1 = 1", "unrouted unknown = 1"}, metrics.Rows(reg.Snapshot(), "mux_connections_total"))
}

// TestDetectHookCounts feeds DetectHook results that alternate protocols
// and reasons (so its per-reason cache of the last series both hits and
// misses), an empty protocol and a Reason beyond the known ones, and checks
// every count against ObserveDetection's, and that a hit or a miss on
// existing series allocates nothing.
func TestDetectHookCounts(t *testing.T) {
	reg := metrics.New(metrics.Config{})
	hook := reg.DetectHook(opaque.Direction(99)) // normalised to Inbound like ObserveDetection
	results := []detect.Result{
		{Protocol: detect.HTTP1, Reason: detect.ReasonMatched, Duration: time.Millisecond},
		{Protocol: detect.HTTP1, Reason: detect.ReasonMatched, Duration: time.Millisecond},
		{Protocol: detect.TLS, Reason: detect.ReasonMatched, Duration: time.Millisecond},
		{Protocol: detect.HTTP1, Reason: detect.ReasonMatched, Duration: time.Millisecond},
		{Protocol: detect.Unknown, Reason: detect.ReasonTimeout, Duration: 20 * time.Second},
		{Protocol: "", Reason: detect.ReasonClosed},
		{Protocol: detect.Unknown, Reason: detect.Reason(200)},
	}
	for range 3 {
		for i := range results {
			hook(&results[i])
		}
	}
	assert.Equal(t, []string{
		"inbound HTTP/1 matched = 9",
		"inbound TLS matched = 3",
		"inbound unknown closed = 3",
		"inbound unknown timeout = 3",
		"inbound unknown unknown = 3",
	}, metrics.Rows(reg.Snapshot(), "protocol_detect_total"))

	allocs := testing.AllocsPerRun(1000, func() {
		for i := range results {
			hook(&results[i])
		}
	})
	assert.Zero(t, allocs)
}
