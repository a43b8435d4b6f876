// Package h2ctest holds the loopback HTTP server the metrics tests share.
package h2ctest

import (
	"net"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// Serve serves h with HTTP/1 and unencrypted HTTP/2 (as grpc-go's insecure
// client speaks it) on 127.0.0.1 and returns the address. The server is
// closed, and its Serve goroutine waited for, when the test ends.
func Serve(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}
