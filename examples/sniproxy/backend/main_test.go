package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBackendAnswers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-name", "a", "-host", "a.test"}, io.Discard, func(a net.Addr) { ready <- a })
	}()
	addr := <-ready
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, ServerName: "a.test"},
		ForceAttemptHTTP2: true,
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Get("https://" + addr.String() + "/x")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, "backend a: GET /x over HTTP/2.0, sni=a.test\n", string(body))
	require.Equal(t, "backend-a", resp.TLS.PeerCertificates[0].Subject.CommonName)
	tr.CloseIdleConnections()
	cancel()
	require.NoError(t, <-done)
}

func TestBackendNeedsName(t *testing.T) {
	require.ErrorContains(t, run(context.Background(), nil, io.Discard, nil), "-name is required")
}
