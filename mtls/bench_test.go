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
	"time"

	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/spiffe"
)

// benchConfigs returns server and client configurations of the three
// kinds compared: this package, this package with an OnHandshake hook, and
// plain crypto/tls doing the same verification (chain against the CA,
// TLS 1.3, and the peer's SPIFFE ID checked in VerifyConnection).
func benchConfigs(b *testing.B) map[string][2]*tls.Config {
	ca := mtlstest.MustNew("example.org")
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
	certOf := func(svid interface {
		Marshal() ([]byte, []byte, error)
	}) tls.Certificate {
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
	checkID := func(want spiffe.ID) func(tls.ConnectionState) error {
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
			handshakeServer(ln, cfg[0], &wg)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				handshakeOnce(b, ln.Addr().String(), cfg[1])
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

// handshakeOnce dials addr, completes a mutual handshake and waits for the
// server's byte.
func handshakeOnce(b *testing.B, addr string, cfg *tls.Config) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(context.Background()); err != nil {
		b.Fatal(err)
	}
	var one [1]byte
	if _, err := io.ReadFull(tc, one[:]); err != nil {
		b.Fatal(err)
	}
	tc.Close()
}

// handshakeServer accepts connections until ln is closed, handshakes each
// and writes one byte.
func handshakeServer(ln net.Listener, cfg *tls.Config, wg *sync.WaitGroup) {
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := tls.Server(c, cfg)
			if tc.HandshakeContext(context.Background()) == nil {
				_, _ = tc.Write([]byte{1})
			}
			tc.Close()
		}
	})
}

// BenchmarkHandshakeSideBySide interleaves one full mutual handshake of
// each kind per iteration (rotating which goes first), so that load on a
// shared machine hits all kinds alike, and reports each kind's handshakes/s
// and the ratio mtls / crypto-tls.
func BenchmarkHandshakeSideBySide(b *testing.B) {
	cfgs := benchConfigs(b)
	var wg sync.WaitGroup
	addrs := make([]string, len(benchOrder))
	defer wg.Wait()
	for i, name := range benchOrder {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close() // before wg.Wait: deferred calls run last-in first-out
		handshakeServer(ln, cfgs[name][0], &wg)
		addrs[i] = ln.Addr().String()
	}
	spent := make([]time.Duration, len(benchOrder))
	b.ResetTimer()
	for i := range b.N {
		for j := range benchOrder {
			k := (i + j) % len(benchOrder)
			t0 := time.Now()
			handshakeOnce(b, addrs[k], cfgs[benchOrder[k]][1])
			spent[k] += time.Since(t0)
		}
	}
	b.StopTimer()
	rate := func(k int) float64 { return float64(b.N) / spent[k].Seconds() }
	for k, name := range benchOrder {
		b.ReportMetric(rate(k), name+"-hs/s")
	}
	b.ReportMetric(rate(0)/rate(2), "mtls/crypto-tls")
	b.ReportMetric(rate(1)/rate(2), "mtls+hook/crypto-tls")
}

// BenchmarkBulkSideBySide moves 1 MiB (16 writes of 64 KiB, then an
// acknowledgement from the server) through an established connection of
// each kind per iteration and reports each kind's MB/s and the ratio
// mtls / crypto-tls.
func BenchmarkBulkSideBySide(b *testing.B) {
	cfgs := benchConfigs(b)
	const chunk, perRound = 64 << 10, 16
	var wg sync.WaitGroup
	conns := make([]*tls.Conn, len(benchOrder))
	for i, name := range benchOrder {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := cfgs[name][0]
		wg.Go(func() {
			c, err := ln.Accept()
			ln.Close()
			if err != nil {
				return
			}
			tc := tls.Server(c, srv)
			defer tc.Close()
			buf := make([]byte, chunk*perRound)
			for {
				if _, err := io.ReadFull(tc, buf); err != nil {
					return
				}
				if _, err := tc.Write(buf[:1]); err != nil {
					return
				}
			}
		})
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		tc := tls.Client(c, cfgs[name][1])
		if err := tc.HandshakeContext(context.Background()); err != nil {
			b.Fatal(err)
		}
		conns[i] = tc
	}
	buf := make([]byte, chunk)
	spent := make([]time.Duration, len(benchOrder))
	b.SetBytes(chunk * perRound * int64(len(benchOrder)))
	b.ResetTimer()
	for i := range b.N {
		for j := range benchOrder {
			k := (i + j) % len(benchOrder)
			t0 := time.Now()
			for range perRound {
				if _, err := conns[k].Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := io.ReadFull(conns[k], buf[:1]); err != nil {
				b.Fatal(err)
			}
			spent[k] += time.Since(t0)
		}
	}
	b.StopTimer()
	rate := func(k int) float64 { return float64(b.N*chunk*perRound) / 1e6 / spent[k].Seconds() }
	for k, name := range benchOrder {
		b.ReportMetric(rate(k), name+"-MB/s")
	}
	b.ReportMetric(rate(0)/rate(2), "mtls/crypto-tls")
	b.ReportMetric(rate(1)/rate(2), "mtls+hook/crypto-tls")
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
}

// BenchmarkVerifyPeer isolates the per-handshake CPU cost of peer
// verification, without the network: this package's VerifyConnection
// (bundle lookup, chain verification against a pool built from the bundle,
// SPIFFE ID extraction, authorization) against what crypto/tls does with a
// prebuilt pool (x509 Verify with an intermediates pool) plus the same ID
// check.
func BenchmarkVerifyPeer(b *testing.B) {
	ca := mtlstest.MustNew("example.org")
	inter := ca.Intermediate()
	peer := inter.Issue("/client")
	src := mtls.NewStaticSource(ca.Issue("/server"), ca.Bundle())
	srv, err := (&mtls.Config{SVID: src, Bundle: src, Authorize: mtls.AuthorizeID(peer.ID)}).ServerTLS()
	if err != nil {
		b.Fatal(err)
	}
	cs := tls.ConnectionState{PeerCertificates: peer.Certificates, HandshakeComplete: true}
	verifyMTLS := func() {
		if err := srv.VerifyConnection(cs); err != nil {
			b.Fatal(err)
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	want := peer.ID.String()
	verifyX509 := func() {
		// crypto/tls builds the intermediates pool per handshake too.
		opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
			b.Fatal(err)
		}
		if u := cs.PeerCertificates[0].URIs; len(u) != 1 || u[0].String() != want {
			b.Fatal("wrong peer")
		}
	}
	b.Run("mtls", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			verifyMTLS()
		}
	})
	b.Run("crypto-x509", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			verifyX509()
		}
	})
	// Interleaved, for the ratio.
	b.Run("side-by-side", func(b *testing.B) {
		var tm, tx time.Duration
		for i := range b.N {
			if i%2 == 0 {
				t0 := time.Now()
				verifyMTLS()
				t1 := time.Now()
				verifyX509()
				tm, tx = tm+t1.Sub(t0), tx+time.Since(t1)
			} else {
				t0 := time.Now()
				verifyX509()
				t1 := time.Now()
				verifyMTLS()
				tx, tm = tx+t1.Sub(t0), tm+time.Since(t1)
			}
		}
		b.ReportMetric(float64(tm.Nanoseconds())/float64(b.N), "mtls-ns/verify")
		b.ReportMetric(float64(tx.Nanoseconds())/float64(b.N), "crypto-x509-ns/verify")
		b.ReportMetric(tx.Seconds()/tm.Seconds(), "mtls/crypto-x509-speed")
	})
}

// BenchmarkHandshakeOwnGoroutine interleaves client handshakes through
// mtls.Handshake (on a goroutine of its own, which the caller waits for) and
// through tls.Conn.HandshakeContext on the caller's goroutine, against the
// same server, each called from a new goroutine as a server's connection
// handler is, and reports each one's handshakes/s and the ratio: what
// freeing the handshake's stack costs.
func BenchmarkHandshakeOwnGoroutine(b *testing.B) {
	cfgs := benchConfigs(b)
	var wg sync.WaitGroup
	defer wg.Wait()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	handshakeServer(ln, cfgs["mtls"][0], &wg)
	kinds := []func(*tls.Conn) error{
		func(tc *tls.Conn) error { _, err := mtls.Handshake(context.Background(), tc); return err },
		func(tc *tls.Conn) error { return tc.HandshakeContext(context.Background()) },
	}
	spent := make([]time.Duration, len(kinds))
	b.ResetTimer()
	for i := range b.N {
		for j := range kinds {
			k := (i + j) % len(kinds)
			t0 := time.Now()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			tc := tls.Client(c, cfgs["mtls"][1])
			done := make(chan error, 1)
			go func() { done <- kinds[k](tc) }()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			var one [1]byte
			if _, err := io.ReadFull(tc, one[:]); err != nil {
				b.Fatal(err)
			}
			tc.Close()
			spent[k] += time.Since(t0)
		}
	}
	b.StopTimer()
	rate := func(k int) float64 { return float64(b.N) / spent[k].Seconds() }
	b.ReportMetric(rate(0), "own-goroutine-hs/s")
	b.ReportMetric(rate(1), "inline-hs/s")
	b.ReportMetric(rate(0)/rate(1), "own/inline")
}
