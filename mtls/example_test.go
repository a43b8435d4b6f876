package mtls_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/spiffe"
)

// A server that accepts only the "web" workload, and a client that expects
// the server to be "db"; both get their SVIDs from an in-memory CA here, and
// from a SPIRE agent (workloadapi.X509Source) or mtls.FileSource in
// production.
func ExampleConfig_ServerTLS() {
	ca := mtlstest.MustNew("example.org")
	dbSrc := ca.Source("/ns/prod/sa/db")
	webSrc := ca.Source("/ns/prod/sa/web")

	serverTLS, err := (&mtls.Config{
		SVID:       dbSrc,
		Bundle:     dbSrc,
		Authorize:  mtls.AuthorizeID(ca.ID("/ns/prod/sa/web")),
		NextProtos: []string{"transport.l5d.io/v1"},
	}).ServerTLS()
	if err != nil {
		fmt.Println(err)
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()

	done := make(chan struct{})
	go func() { // the client side, see ExampleConfig_ClientTLS
		defer close(done)
		clientTLS, _ := (&mtls.Config{
			SVID: webSrc, Bundle: webSrc,
			Authorize:  mtls.AuthorizeID(ca.ID("/ns/prod/sa/db")),
			NextProtos: []string{"transport.l5d.io/v1"},
		}).ClientTLS()
		conn, err := tls.Dial("tcp", ln.Addr().String(), clientTLS)
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.Copy(io.Discard, conn)
	}()

	raw, err := ln.Accept()
	if err != nil {
		fmt.Println(err)
		return
	}
	conn := tls.Server(raw, serverTLS)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	peer, err := mtls.Handshake(ctx, conn)
	if err != nil {
		fmt.Println("refused:", mtls.Classify(err), err)
	} else {
		fmt.Println("client:", peer)
		fmt.Println("ALPN:", conn.ConnectionState().NegotiatedProtocol)
	}
	conn.Close()
	<-done
	// Output:
	// client: spiffe://example.org/ns/prod/sa/web
	// ALPN: transport.l5d.io/v1
}

// The client learns the server's identity from Handshake. A server that
// refuses the client's certificate is only noticed on the first Read: in
// TLS 1.3 the client's handshake completes first.
func ExampleConfig_ClientTLS() {
	ca := mtlstest.MustNew("example.org")
	dbSrc := ca.Source("/ns/prod/sa/db")
	webSrc := ca.Source("/ns/prod/sa/web")

	// The server admits only members of namespace "admin".
	serverTLS, _ := (&mtls.Config{
		SVID: dbSrc, Bundle: dbSrc,
		Authorize: mtls.AuthorizePrefix(ca.ID("/ns/admin")),
	}).ServerTLS()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		conn := tls.Server(raw, serverTLS)
		_, err = mtls.Handshake(context.Background(), conn)
		conn.Close()
		done <- err
	}()

	clientTLS, err := (&mtls.Config{
		SVID: webSrc, Bundle: webSrc,
		Authorize: mtls.AuthorizeMemberOf(ca.TrustDomain()),
	}).ClientTLS()
	if err != nil {
		fmt.Println(err)
		return
	}
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	conn := tls.Client(raw, clientTLS)
	defer conn.Close()
	server, err := mtls.Handshake(context.Background(), conn)
	fmt.Println("server:", server, err)
	_, err = conn.Read(make([]byte, 1))
	fmt.Println("first read:", mtls.Classify(err))
	serverErr := <-done
	fmt.Println("server said:", mtls.Classify(serverErr), errors.Is(serverErr, mtls.ErrUnauthorized))
	// Output:
	// server: spiffe://example.org/ns/prod/sa/db <nil>
	// first read: rejected
	// server said: unauthorized true
}

// AuthorizePrefix matches whole path segments.
func ExampleAuthorizePrefix() {
	auth := mtls.AuthorizePrefix(spiffe.MustParseID("spiffe://example.org/ns/prod"))
	for _, s := range []string{
		"spiffe://example.org/ns/prod",
		"spiffe://example.org/ns/prod/sa/web",
		"spiffe://example.org/ns/production",
		"spiffe://other.org/ns/prod/sa/web",
	} {
		fmt.Println(s, auth(spiffe.MustParseID(s), nil) == nil)
	}
	// Output:
	// spiffe://example.org/ns/prod true
	// spiffe://example.org/ns/prod/sa/web true
	// spiffe://example.org/ns/production false
	// spiffe://other.org/ns/prod/sa/web false
}

// Linkerd's DNS identities map to SPIFFE IDs.
func ExampleParseLinkerdDNS() {
	id, err := mtls.ParseLinkerdDNS("web.default.serviceaccount.identity.linkerd.cluster.local")
	fmt.Println(id, err)
	name, err := mtls.LinkerdDNS(id)
	fmt.Println(name, err)
	// Output:
	// spiffe://cluster.local/ns/default/sa/web <nil>
	// web.default.serviceaccount.identity.linkerd.cluster.local <nil>
}

// A FileSource serves the files of a secret mount and picks up new ones;
// here Reload is called by hand instead of waiting for the poll.
func ExampleNewFileSource() {
	dir, err := os.MkdirTemp("", "mtls-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	ca := mtlstest.MustNew("example.org")
	files, _ := mtlstest.WritePEM(dir, "tls", ca.Issue("/web"), ca.Bundle())

	src, err := mtls.NewFileSource(context.Background(), mtls.FileConfig{
		CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle,
		Interval: -1, // no polling in this example
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer src.Close()
	svid, _ := src.SVID()
	fmt.Println("serving", svid.ID)

	// A half-written certificate is refused; the old one stays.
	_ = os.WriteFile(files.Cert, []byte("-----BEGIN CERTIFICATE-----\nMIIB"), 0o600)
	err = src.Reload()
	svid, _ = src.SVID()
	fmt.Println("refused:", err != nil, "serving", svid.ID)

	// Complete new files are taken.
	_, _ = mtlstest.WritePEM(dir, "tls", ca.Issue("/web-v2"), ca.Bundle())
	err = src.Reload()
	svid, _ = src.SVID()
	fmt.Println("reloaded:", err, "serving", svid.ID)
	// Output:
	// serving spiffe://example.org/web
	// refused: true serving spiffe://example.org/web
	// reloaded: <nil> serving spiffe://example.org/web-v2
}
