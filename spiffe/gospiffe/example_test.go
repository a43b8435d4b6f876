package gospiffe_test

import (
	"context"
	"crypto/tls"
	"net"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/spiffe"
	"github.com/sniffsplice/sniff/spiffe/gospiffe"
)

// A sidecar's inbound listener with the SVID and bundles of a SPIRE agent. (Not run: it needs an
// agent at SPIFFE_ENDPOINT_SOCKET.)
func Example() {
	ctx := context.Background()
	src, err := workloadapi.NewX509Source(ctx)
	if err != nil {
		panic(err)
	}
	defer src.Close()

	cfg := &mtls.Config{
		SVID:      gospiffe.SVIDSource(src),
		Bundle:    gospiffe.BundleSource(src),
		Authorize: mtls.AuthorizeMemberOf(spiffe.MustParseTrustDomain("example.org")),
	}
	tc, err := cfg.ServerTLS()
	if err != nil {
		panic(err)
	}
	ln, err := tls.Listen("tcp", ":4143", tc)
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	var _ net.Listener = ln
}
