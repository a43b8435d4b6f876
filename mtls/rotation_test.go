package mtls_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/spiffe"
)

// echoServer serves srv on loopback: each connection is handshaken with
// mtls.Handshake, then echoes lines until the client closes. Connections
// that fail the handshake are closed. It stops when the test ends.
func echoServer(t *testing.T, srv *tls.Config) (addr string, peers <-chan spiffe.ID) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ids := make(chan spiffe.ID, 16)
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				tc := tls.Server(c, srv)
				defer tc.Close()
				id, err := mtls.Handshake(ctx, tc)
				if err != nil {
					return
				}
				ids <- id
				r := bufio.NewReader(tc)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := tc.Write([]byte(line)); err != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		cancel()
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), ids
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	tc := tls.Client(raw, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	_, err = mtls.Handshake(ctx, tc)
	require.NoError(t, err)
	t.Cleanup(func() { tc.Close() })
	return tc
}

func echo(t *testing.T, c *tls.Conn, msg string) {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(patience)))
	_, err := c.Write([]byte(msg + "\n"))
	require.NoError(t, err)
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, msg+"\n", line)
}

func TestRotation(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	srvSrc := ca.Source("/server")
	cliSrc := ca.Source("/client")
	srv := mustServer(t, &mtls.Config{SVID: srvSrc, Bundle: srvSrc})
	cli := mustClient(t, &mtls.Config{SVID: cliSrc, Bundle: cliSrc})
	addr, peers := echoServer(t, srv)

	first, _ := srvSrc.SVID()
	c1 := dialTLS(t, addr, cli)
	echo(t, c1, "before rotation")
	assert.Equal(t, first.Certificates[0].SerialNumber, c1.ConnectionState().PeerCertificates[0].SerialNumber)
	firstClient := <-peers
	assert.Equal(t, "spiffe://example.org/client", firstClient.String())

	// Rotate both sides' SVIDs (the server's moves to a new ID, the
	// client's to a new key), with no rebuild of either *tls.Config.
	rotated := ca.Issue("/server-v2")
	srvSrc.SetSVID(rotated)
	cliRotated := ca.Issue("/client-v2")
	cliSrc.SetSVID(cliRotated)

	c2 := dialTLS(t, addr, cli)
	echo(t, c2, "after rotation")
	st := c2.ConnectionState()
	assert.Equal(t, rotated.Certificates[0].SerialNumber, st.PeerCertificates[0].SerialNumber, "new SVID on the next handshake")
	id, err := mtls.PeerID(st)
	require.NoError(t, err)
	assert.Equal(t, "spiffe://example.org/server-v2", id.String())
	assert.Equal(t, "spiffe://example.org/client-v2", (<-peers).String())

	// The connection made before the rotation keeps working.
	echo(t, c1, "old connection still works")
	assert.Equal(t, first.Certificates[0].SerialNumber, c1.ConnectionState().PeerCertificates[0].SerialNumber)

	// Rotating the trust bundle takes effect on the next handshake too: a
	// client that stops trusting the server's CA refuses it.
	cliSrc.SetBundles(mtlstest.MustNew("example.org").Bundle())
	raw, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	tc := tls.Client(raw, cli)
	defer tc.Close()
	_, err = mtls.Handshake(context.Background(), tc)
	assert.ErrorIs(t, err, mtls.ErrUntrusted)
	echo(t, c2, "established connections are not re-verified")
}

func TestResumedSessionStillAuthorized(t *testing.T) {
	// With a hook the server hands crypto/tls a per-handshake copy of its
	// configuration; without one it does not. Resumption works either way.
	t.Run("with hook", func(t *testing.T) { testResumedSessionStillAuthorized(t, true) })
	t.Run("without hook", func(t *testing.T) { testResumedSessionStillAuthorized(t, false) })
}

func testResumedSessionStillAuthorized(t *testing.T, withHook bool) {
	ca := mtlstest.MustNew("example.org")
	srvSrc := ca.Source("/server")
	cliSrc := ca.Source("/client")
	var deny atomic.Bool
	var ev events
	hook := ev.hook
	if !withHook {
		hook = nil
	}
	srv := mustServer(t, &mtls.Config{
		SVID: srvSrc, Bundle: srvSrc, SessionTickets: true, OnHandshake: hook,
		Authorize: func(id spiffe.ID, chains [][]*x509.Certificate) error {
			if deny.Load() {
				return errDenied
			}
			return mtls.AuthorizeID(ca.ID("/client"))(id, chains)
		},
	})
	cli := mustClient(t, &mtls.Config{SVID: cliSrc, Bundle: cliSrc, SessionTickets: true})
	cli.ServerName = "server.test" // a stable session cache key across listeners

	o1 := exchange(t, srv, tlsClient(cli))
	require.NoError(t, o1.srvErr)
	require.NoError(t, o1.cliReadErr) // reading also consumed the session ticket
	assert.False(t, o1.cliState.DidResume)

	o2 := exchange(t, srv, tlsClient(cli))
	require.NoError(t, o2.srvErr)
	require.NoError(t, o2.cliReadErr)
	assert.True(t, o2.srvState.DidResume, "second connection resumes")
	assert.True(t, o2.cliState.DidResume)
	assert.Equal(t, "spiffe://example.org/client", o2.srvID.String(), "peer ID known on a resumed session")
	assert.Equal(t, "spiffe://example.org/server", o2.cliID.String())

	deny.Store(true)
	o3 := exchange(t, srv, tlsClient(cli))
	require.Error(t, o3.srvErr)
	assert.ErrorIs(t, o3.srvErr, mtls.ErrUnauthorized)
	assert.ErrorIs(t, o3.srvErr, errDenied)
	assert.True(t, o3.cliState.DidResume, "the refused handshake was a resumption")
	require.Error(t, o3.cliReadErr)
	assert.Equal(t, mtls.ReasonRejected, mtls.Classify(o3.cliReadErr))

	evs := ev.all()
	if !withHook {
		assert.Empty(t, evs)
		return
	}
	require.Len(t, evs, 3)
	assert.False(t, evs[0].Resumed)
	assert.True(t, evs[1].Resumed)
	assert.Equal(t, mtls.ReasonOK, evs[1].Reason)
	assert.True(t, evs[2].Resumed)
	assert.Equal(t, mtls.ReasonUnauthorized, evs[2].Reason)
}

func TestSessionTicketsOffByDefault(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	srvSrc := ca.Source("/server")
	cliSrc := ca.Source("/client")
	srv := mustServer(t, &mtls.Config{SVID: srvSrc, Bundle: srvSrc})
	assert.True(t, srv.SessionTicketsDisabled)
	// Even a client with a session cache does not resume.
	cli := mustClient(t, &mtls.Config{SVID: cliSrc, Bundle: cliSrc})
	cli.SessionTicketsDisabled = false
	cli.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	cli.ServerName = "server.test"
	for range 2 {
		o := exchange(t, srv, tlsClient(cli))
		require.NoError(t, o.srvErr)
		require.NoError(t, o.cliReadErr)
		assert.False(t, o.srvState.DidResume)
	}
}

var errDenied = errors.New("denied by test switch")
