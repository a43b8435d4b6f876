package mtls_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
)

// FuzzParseLinkerdDNS: no panics; an accepted name maps back to itself
// through LinkerdDNS (without a trailing dot).
func FuzzParseLinkerdDNS(f *testing.F) {
	f.Add("web.default.serviceaccount.identity.linkerd.cluster.local")
	f.Add("web.default.serviceaccount.identity.linkerd.cluster.local.")
	f.Add(".serviceaccount.identity.linkerd.")
	f.Fuzz(func(t *testing.T, name string) {
		id, err := mtls.ParseLinkerdDNS(name)
		if err != nil {
			return
		}
		back, err := mtls.LinkerdDNS(id)
		if err != nil {
			t.Fatalf("%q parsed to %q which has no Linkerd form: %v", name, id, err)
		}
		if back != strings.TrimSuffix(name, ".") {
			t.Fatalf("%q -> %q -> %q", name, id, back)
		}
	})
}

// FuzzFileSourceReload writes arbitrary bytes over the certificate, key or
// bundle file: Reload must never panic, and whenever it refuses the files
// the previous SVID must still be served.
func FuzzFileSourceReload(f *testing.F) {
	ca := mtlstest.MustNew("example.org")
	svid := ca.Issue("/server")
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(0), certPEM[:len(certPEM)/2])
	f.Add(uint8(1), keyPEM[:len(keyPEM)-10])
	f.Add(uint8(2), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add(uint8(0), []byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		files, err := mtlstest.WritePEM(dir, "f", svid, ca.Bundle())
		if err != nil {
			t.Fatal(err)
		}
		fs, err := mtls.NewFileSource(context.Background(), mtls.FileConfig{
			CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle, Interval: -1,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer fs.Close()
		target := []string{files.Cert, files.Key, files.Bundle}[int(which)%3]
		if err := os.WriteFile(filepath.Clean(target), data, 0o600); err != nil {
			t.Fatal(err)
		}
		rerr := fs.Reload()
		got, _ := fs.SVID()
		if rerr != nil {
			if got.Certificates[0].SerialNumber.Cmp(svid.Certificates[0].SerialNumber) != 0 {
				t.Fatal("refused files replaced the SVID")
			}
			if fs.Err() == nil {
				t.Fatal("Err() is nil after a refused reload")
			}
			return
		}
		// Accepted: the served SVID verifies against the served bundle.
		b, err := fs.BundleFor(got.ID.TrustDomain())
		if err != nil || len(b.Authorities()) == 0 {
			t.Fatalf("accepted files without a usable bundle: %v", err)
		}
	})
}
