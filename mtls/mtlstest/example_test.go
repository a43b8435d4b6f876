package mtlstest_test

import (
	"fmt"
	"os"
	"time"

	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/spiffe"
)

// A CA issues SVIDs, and a Source wraps one with the CA's bundle for an
// mtls.Config.
func ExampleMustNew() {
	ca := mtlstest.MustNew("example.org")
	svid := ca.Issue("/ns/default/sa/web")
	fmt.Println(svid.ID)

	id, _, err := spiffe.VerifySVID(svid.Certificates, ca.Bundle(), time.Time{})
	fmt.Println("verifies:", id, err)

	src := ca.Source("/ns/default/sa/db")
	cfg := &mtls.Config{SVID: src, Bundle: src}
	_, err = cfg.ServerTLS()
	fmt.Println("server config:", err)
	// Output:
	// spiffe://example.org/ns/default/sa/web
	// verifies: spiffe://example.org/ns/default/sa/web <nil>
	// server config: <nil>
}

// Deliberately bad certificates for negative tests.
func ExampleCA_Issue() {
	ca := mtlstest.MustNew("example.org")
	bad := []struct {
		name string
		svid *spiffe.SVID
	}{
		{"expired", ca.Issue("/web", mtlstest.Expired())},
		{"not yet valid", ca.Issue("/web", mtlstest.NotYetValid())},
		{"two URI SANs", ca.Issue("/web", mtlstest.WithExtraURI("spiffe://example.org/admin"))},
		{"CA leaf", ca.Issue("/web", mtlstest.AsCA())},
		{"untrusted", mtlstest.MustNew("example.org").Issue("/web")},
	}
	for _, b := range bad {
		_, _, err := spiffe.VerifySVID(b.svid.Certificates, ca.Bundle(), time.Time{})
		fmt.Println(b.name, "refused:", err != nil)
	}
	deep := ca.Intermediate().Issue("/web")
	fmt.Println("chain length:", len(deep.Certificates))
	// Output:
	// expired refused: true
	// not yet valid refused: true
	// two URI SANs refused: true
	// CA leaf refused: true
	// untrusted refused: true
	// chain length: 2
}

// PEM files for openssl or mtls.FileSource.
func ExampleWritePEM() {
	dir, _ := os.MkdirTemp("", "mtlstest")
	defer os.RemoveAll(dir)
	ca := mtlstest.MustNew("example.org")
	files, err := mtlstest.WritePEM(dir, "web", ca.Issue("/web"), ca.Bundle())
	fmt.Println(err)
	svid, err := spiffe.LoadSVID(files.Cert, files.Key)
	fmt.Println(svid.ID, err)
	// Output:
	// <nil>
	// spiffe://example.org/web <nil>
}
