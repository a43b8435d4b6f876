package opaque

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// selfSigned returns a certificate for "peer.test" and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "peer.test"},
		DNSNames:     []string{"peer.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// TestHeaderOverTLS is the way two proxies use the header: a TLS 1.3
// connection over loopback TCP negotiating ALPN "transport.l5d.io/v1", the
// header written in one record together with nothing else, then application
// bytes. The inbound side checks the ALPN, reads exactly the header from the
// *tls.Conn and then gets every application byte.
func TestHeaderOverTLS(t *testing.T) {
	bound(t)
	cert, pool := selfSigned(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{ALPN},
		MinVersion:   tls.VersionTLS13,
	})
	require.NoError(t, err)
	defer ln.Close()

	want := Header{Port: 6379, Name: "redis.cache.svc.cluster.local"}
	payload := bytes.Repeat([]byte("+PONG\r\n"), 20000)
	clientErr := make(chan error, 1)
	go func() {
		clientErr <- func() error {
			c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
				RootCAs: pool, ServerName: "peer.test", NextProtos: []string{ALPN}, MinVersion: tls.VersionTLS13,
			})
			if err != nil {
				return err
			}
			defer c.Close()
			if err := WriteHeader(c, want); err != nil {
				return err
			}
			if _, err := c.Write(payload); err != nil {
				return err
			}
			return c.CloseWrite()
		}()
	}()

	raw, err := ln.Accept()
	require.NoError(t, err)
	defer raw.Close()
	conn := raw.(*tls.Conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, conn.HandshakeContext(ctx))
	assert.Equal(t, ALPN, conn.ConnectionState().NegotiatedProtocol)

	got, err := ReadHeaderContext(ctx, conn)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	rest, err := io.ReadAll(conn)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(payload, rest), "application bytes after the header differ (%d vs %d bytes)", len(rest), len(payload))
	require.NoError(t, <-clientErr)
}
