package mtls_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/spiffe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// "must happen" bound for loopback handshakes on a loaded machine.
const patience = 20 * time.Second

// outcome is what both ends of one loopback connection saw.
type outcome struct {
	srvID, cliID     spiffe.ID
	srvErr, cliErr   error // from mtls.Handshake
	cliReadErr       error // client's first Read after its handshake
	srvState         tls.ConnectionState
	cliState         tls.ConnectionState
	cliRead, srvRead string
}

// exchange accepts one connection with srv and dials it with the client
// function, over real loopback TCP. After a successful handshake the server
// writes "ok\n" and closes; the client reads it (or the refusal alert).
func exchange(t *testing.T, srv *tls.Config, dial func(ctx context.Context, c net.Conn) (spiffe.ID, *tls.Conn, error)) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	addr, wait := serveOne(t, ctx, srv, func(spiffe.ID) string { return "ok\n" })

	var o outcome
	raw, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	id, tc, err := dial(ctx, raw)
	o.cliID, o.cliErr = id, err
	if tc != nil {
		defer tc.Close()
		o.cliState = tc.ConnectionState()
		if err == nil {
			_ = tc.SetReadDeadline(time.Now().Add(patience))
			b, rerr := io.ReadAll(tc)
			o.cliRead, o.cliReadErr = string(b), rerr
		}
	} else {
		raw.Close()
	}
	o.srvID, o.srvState, o.srvErr = wait()
	return o
}

// serveOne accepts one connection on a new loopback listener (closed when
// the test ends), runs mtls.Handshake over it with srv and, once the peer is
// verified, writes greet(peer) and closes. wait blocks until the server is
// done and returns what it saw.
func serveOne(t *testing.T, ctx context.Context, srv *tls.Config, greet func(peer spiffe.ID) string) (addr string, wait func() (spiffe.ID, tls.ConnectionState, error)) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })

	var (
		id    spiffe.ID
		state tls.ConnectionState
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, aerr := ln.Accept()
		if aerr != nil {
			err = aerr
			return
		}
		tc := tls.Server(c, srv)
		defer tc.Close()
		id, err = mtls.Handshake(ctx, tc)
		state = tc.ConnectionState()
		if err == nil {
			_, _ = tc.Write([]byte(greet(id)))
		}
	}()
	return ln.Addr().String(), func() (spiffe.ID, tls.ConnectionState, error) {
		<-done
		return id, state, err
	}
}

// tlsClient dials with a *tls.Config through mtls.Handshake.
func tlsClient(cfg *tls.Config) func(ctx context.Context, c net.Conn) (spiffe.ID, *tls.Conn, error) {
	return func(ctx context.Context, c net.Conn) (spiffe.ID, *tls.Conn, error) {
		tc := tls.Client(c, cfg)
		id, err := mtls.Handshake(ctx, tc)
		return id, tc, err
	}
}

func mustServer(t *testing.T, c *mtls.Config) *tls.Config {
	t.Helper()
	tc, err := c.ServerTLS()
	require.NoError(t, err)
	return tc
}

func mustClient(t *testing.T, c *mtls.Config) *tls.Config {
	t.Helper()
	tc, err := c.ClientTLS()
	require.NoError(t, err)
	return tc
}
