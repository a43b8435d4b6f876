package selfsigned

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNewNoName(t *testing.T) {
	_, err := New("")
	require.ErrorIs(t, err, ErrNoName)
}

func TestNewNamesAndHandshake(t *testing.T) {
	cert, err := New("backend-a", "a.test", "*.example.test", "127.0.0.1")
	require.NoError(t, err)
	require.Equal(t, "backend-a", cert.Leaf.Subject.CommonName)
	require.Equal(t, []string{"a.test", "*.example.test"}, cert.Leaf.DNSNames)
	require.Len(t, cert.Leaf.IPAddresses, 1)

	for _, tc := range []struct {
		serverName string
		ok         bool
	}{
		{"a.test", true},
		{"x.example.test", true},
		{"127.0.0.1", true},
		{"b.test", false},
	} {
		t.Run(tc.serverName, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer ln.Close()
			done := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- err
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				done <- tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}}).Handshake()
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			require.NoError(t, err)
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			err = tls.Client(c, &tls.Config{RootCAs: Pool(cert), ServerName: tc.serverName}).Handshake()
			if tc.ok {
				require.NoError(t, err)
				require.NoError(t, <-done)
				return
			}
			var verr *tls.CertificateVerificationError
			require.True(t, errors.As(err, &verr), "want a verification error, got %v", err)
			c.Close()
			require.Error(t, <-done, "the server sees the client's alert")
		})
	}
}
