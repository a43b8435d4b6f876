package mtls_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/spiffe"
)

func serial(t *testing.T, src interface {
	SVID() (*spiffe.SVID, error)
}) string {
	t.Helper()
	s, err := src.SVID()
	require.NoError(t, err)
	return s.Certificates[0].SerialNumber.String()
}

func TestFileSourceKeepsOldCertificateOnTruncatedFile(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	dir := t.TempDir()
	first := ca.Issue("/server")
	files, err := mtlstest.WritePEM(dir, "server", first, ca.Bundle())
	require.NoError(t, err)

	reloads := make(chan error, 16)
	fs, err := mtls.NewFileSource(context.Background(), mtls.FileConfig{
		CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle,
		Interval: 10 * time.Millisecond,
		OnReload: func(err error) { reloads <- err },
	})
	require.NoError(t, err)
	defer fs.Close()
	assert.Equal(t, first.Certificates[0].SerialNumber.String(), serial(t, fs))

	srv := mustServer(t, &mtls.Config{SVID: fs, Bundle: fs})
	cliSrc := ca.Source("/client")
	cli := mustClient(t, &mtls.Config{SVID: cliSrc, Bundle: cliSrc})
	addr, _ := echoServer(t, srv)
	c1 := dialTLS(t, addr, cli)
	echo(t, c1, "hello")

	// A new certificate, half written: the key is complete, the cert file is cut.
	second := ca.Issue("/server")
	certPEM, keyPEM, err := second.Marshal()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(files.Cert, certPEM[:len(certPEM)/2], 0o600))
	require.NoError(t, os.WriteFile(files.Key, keyPEM, 0o600))

	// The poll reads the files one after the other while they are being
	// written, so it may first refuse intermediate states (old cert with the
	// new key, an empty file); every attempt must be a refusal, and the
	// final state must be refused for the truncated certificate.
	var rerr error
	deadline := time.After(patience)
	for {
		select {
		case rerr = <-reloads:
		case <-deadline:
			t.Fatal("the truncated certificate was never refused")
		}
		require.Error(t, rerr, "a reload attempt succeeded with a truncated certificate")
		re, ok := errors.AsType[*mtls.ReloadError](rerr)
		require.True(t, ok, "%T %v", rerr, rerr)
		if re.Path == files.Cert && strings.Contains(rerr.Error(), "not a complete PEM block") {
			break
		}
	}
	assert.Contains(t, rerr.Error(), "keeping the previous")
	// A later poll may have refused a later intermediate state; Err reports
	// the latest refusal.
	_, ok := errors.AsType[*mtls.ReloadError](fs.Err())
	assert.True(t, ok, "Err() = %v", fs.Err())
	assert.Equal(t, first.Certificates[0].SerialNumber.String(), serial(t, fs), "old certificate kept")
	// ... and served: new handshakes still work with the old certificate.
	c2 := dialTLS(t, addr, cli)
	echo(t, c2, "still served")
	assert.Equal(t, first.Certificates[0].SerialNumber, c2.ConnectionState().PeerCertificates[0].SerialNumber)

	// The writer finishes: the new certificate is taken on the next poll.
	require.NoError(t, os.WriteFile(files.Cert, certPEM, 0o600))
	// Refusals of intermediate states may still be queued; wait for success.
	deadline = time.After(patience)
	for rerr = errors.New("pending"); rerr != nil; {
		select {
		case rerr = <-reloads:
		case <-deadline:
			t.Fatal("no successful reload after the file was completed")
		}
	}
	assert.NoError(t, fs.Err())
	assert.Equal(t, second.Certificates[0].SerialNumber.String(), serial(t, fs))
	c3 := dialTLS(t, addr, cli)
	echo(t, c3, "rotated")
	assert.Equal(t, second.Certificates[0].SerialNumber, c3.ConnectionState().PeerCertificates[0].SerialNumber)
	echo(t, c1, "first connection still works")
}

func TestFileSourceRefusesInconsistentFiles(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	dir := t.TempDir()
	first := ca.Issue("/server")
	files, err := mtlstest.WritePEM(dir, "s", first, ca.Bundle())
	require.NoError(t, err)
	fs, err := mtls.NewFileSource(context.Background(), mtls.FileConfig{
		CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle, Interval: -1,
	})
	require.NoError(t, err)
	defer fs.Close()
	old := serial(t, fs)
	assert.NoError(t, fs.Reload(), "unchanged files")

	second := ca.Issue("/server")
	certPEM, keyPEM, err := second.Marshal()
	require.NoError(t, err)

	// Certificate written before its key.
	require.NoError(t, os.WriteFile(files.Cert, certPEM, 0o600))
	err = fs.Reload()
	var re *mtls.ReloadError
	require.ErrorAs(t, err, &re)
	assert.ErrorIs(t, err, mtls.ErrKeyMismatch)
	assert.Empty(t, re.Path, "a mismatch is the files disagreeing, not one file at fault")
	assert.Equal(t, old, serial(t, fs))
	assert.NoError(t, fs.Reload(), "refused contents are not retried until they change")

	// Empty key file.
	require.NoError(t, os.WriteFile(files.Key, nil, 0o600))
	err = fs.Reload()
	require.ErrorAs(t, err, &re)
	assert.Equal(t, files.Key, re.Path, "the empty key file is named")
	assert.Equal(t, old, serial(t, fs))

	// Key complete: taken.
	require.NoError(t, os.WriteFile(files.Key, keyPEM, 0o600))
	require.NoError(t, fs.Reload())
	assert.Equal(t, second.Certificates[0].SerialNumber.String(), serial(t, fs))

	// A certificate from another CA than the bundle's.
	rogue := mtlstest.MustNew("example.org").Issue("/server")
	rc, rk, err := rogue.Marshal()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(files.Cert, rc, 0o600))
	require.NoError(t, os.WriteFile(files.Key, rk, 0o600))
	err = fs.Reload()
	assert.ErrorIs(t, err, mtls.ErrUntrusted)
	assert.Equal(t, second.Certificates[0].SerialNumber.String(), serial(t, fs))

	// An expired certificate.
	exp := ca.Issue("/server", mtlstest.Expired())
	ec, ek, err := exp.Marshal()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(files.Cert, ec, 0o600))
	require.NoError(t, os.WriteFile(files.Key, ek, 0o600))
	assert.ErrorIs(t, fs.Reload(), mtls.ErrExpired)

	// A missing file.
	require.NoError(t, os.Remove(files.Bundle))
	err = fs.Reload()
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Equal(t, second.Certificates[0].SerialNumber.String(), serial(t, fs))

	// Bundle for another trust domain is not served.
	b, err := fs.BundleFor(mtlstest.MustNew("other.org").TrustDomain())
	require.Error(t, err)
	assert.Nil(t, b)
	assert.Equal(t, `mtls: no bundle for trust domain "other.org" (files hold "example.org")`, err.Error())
	assert.ErrorIs(t, err, spiffe.ErrNoBundle)
}

func TestFileSourceInitialLoadFails(t *testing.T) {
	dir := t.TempDir()
	_, err := mtls.NewFileSource(context.Background(), mtls.FileConfig{
		CertFile: filepath.Join(dir, "no.crt"), KeyFile: filepath.Join(dir, "no.key"), BundleFile: filepath.Join(dir, "no-bundle.crt"),
	})
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestFileSourceStopsWithContext(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	files, err := mtlstest.WritePEM(t.TempDir(), "s", ca.Issue("/s"), ca.Bundle())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	fs, err := mtls.NewFileSource(ctx, mtls.FileConfig{CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle, Interval: time.Millisecond})
	require.NoError(t, err)
	cancel()
	require.NoError(t, fs.Close()) // waits for the goroutine that ctx stopped
	require.NoError(t, fs.Close()) // idempotent
	// goleak in TestMain checks nothing is left running.
}

func TestFileSourceLinkerdIdentity(t *testing.T) {
	ca := mtlstest.MustNew("cluster.local")
	files, err := mtlstest.WritePEM(t.TempDir(), "s",
		ca.IssueLinkerd("web.default.serviceaccount.identity.linkerd.cluster.local"), ca.Bundle())
	require.NoError(t, err)
	_, err = mtls.NewFileSource(context.Background(), mtls.FileConfig{CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle, Interval: -1})
	assert.Error(t, err, "no URI SAN in SPIFFE mode")
	fs, err := mtls.NewFileSource(context.Background(), mtls.FileConfig{
		CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle, Interval: -1,
		Identity: mtls.IdentityLinkerdDNS,
	})
	require.NoError(t, err)
	defer fs.Close()
	s, err := fs.SVID()
	require.NoError(t, err)
	assert.Equal(t, "spiffe://cluster.local/ns/default/sa/web", s.ID.String())
}
