package mtls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
)

// benchConfigs returns server and client configurations of the three
// kinds compared: this package, this package with an OnHandshake hook, and
// plain crypto/tls doing the same verification (chain against the CA,
// TLS 1.3, and the peer's SPIFFE ID checked in VerifyConnection).
func benchConfigs(b *testing.B) map[string][2]*tls.Config {
	ca := mtlstest.NewCA("example.org")
	srvSVID := ca.Issue("/server", mtlstest.WithDNSNames("server.test")) // the DNS name lets plain crypto/tls verify the server normally
	cliSVID := ca.Issue("/client")
	srvID, cliID := srvSVID.ID, cliSVID.ID
	srvSrc := mtls.NewStaticSource(srvSVID, ca.Bundle())
	cliSrc := mtls.NewStaticSource(cliSVID, ca.Bundle())

	build := func(hook func(mtls.HandshakeEvent)) [2]*tls.Config {
		s, err := (&mtls.Config{SVID: srvSrc, Bundle: srvSrc, Authorize: mtls.AuthorizeID(cliID), OnHandshake: hook}).ServerTLS()
		if err != nil {
			b.Fatal(err)
		}
		c, err := (&mtls.Config{SVID: cliSrc, Bundle: cliSrc, Authorize: mtls.AuthorizeID(srvID), OnHandshake: hook}).ClientTLS()
		if err != nil {
			b.Fatal(err)
		}
		return [2]*tls.Config{s, c}
	}

	pool := x509.NewCertPool()
	pool.AddCert(ca.Root())
	certOf := func(svid interface{ Marshal() ([]byte, []byte, error) }) tls.Certificate {
		c, k, err := svid.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		cert, err := tls.X509KeyPair(c, k)
		if err != nil {
			b.Fatal(err)
		}
		return cert
	}
	checkID := func(want spiffeid.ID) func(tls.ConnectionState) error {
		return func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || len(cs.PeerCertificates[0].URIs) != 1 ||
				cs.PeerCertificates[0].URIs[0].String() != want.String() {
				return errors.New("wrong peer")
			}
			return nil
		}
	}
	plain := [2]*tls.Config{
		{
			MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{certOf(srvSVID)},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
			SessionTicketsDisabled: true, VerifyConnection: checkID(cliID),
		},
		{
			MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{certOf(cliSVID)},
			RootCAs: pool, ServerName: "server.test",
			SessionTicketsDisabled: true, VerifyConnection: checkID(srvID),
		},
	}
	var mu sync.Mutex
	n := 0
	return map[string][2]*tls.Config{
		"mtls":       build(nil),
		"mtls+hook":  build(func(mtls.HandshakeEvent) { mu.Lock(); n++; mu.Unlock() }),
		"crypto-tls": plain,
	}
}

var benchOrder = []string{"mtls", "mtls+hook", "crypto-tls"}

// BenchmarkHandshake measures full mutual TLS 1.3 handshakes over loopback
// TCP (connect, handshake on both sides, one byte from the server so the
// client knows it was accepted, close).
func BenchmarkHandshake(b *testing.B) {
	cfgs := benchConfigs(b)
	for _, name := range benchOrder {
		cfg := cfgs[name]
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					tc := tls.Server(c, cfg[0])
					if tc.HandshakeContext(context.Background()) == nil {
						_, _ = tc.Write([]byte{1})
					}
					tc.Close()
				}
			})
			one := make([]byte, 1)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				tc := tls.Client(c, cfg[1])
				if err := tc.HandshakeContext(context.Background()); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(tc, one); err != nil {
					b.Fatal(err)
				}
				tc.Close()
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
			ln.Close()
			wg.Wait()
		})
	}
}

// BenchmarkBulk measures one-way bulk throughput through an established
// connection (64 KiB writes, the server discards).
func BenchmarkBulk(b *testing.B) {
	cfgs := benchConfigs(b)
	const chunk = 64 << 10
	for _, name := range benchOrder {
		cfg := cfgs[name]
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				tc := tls.Server(c, cfg[0])
				_, _ = io.Copy(io.Discard, tc)
				_, _ = tc.Write([]byte{1})
				tc.Close()
			})
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			tc := tls.Client(c, cfg[1])
			if err := tc.HandshakeContext(context.Background()); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, chunk)
			b.SetBytes(chunk)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := tc.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			_ = tc.CloseWrite()
			_, _ = io.ReadFull(tc, buf[:1]) // the server has read everything
			b.StopTimer()
			tc.Close()
			ln.Close()
			wg.Wait()
		})
	}
}
