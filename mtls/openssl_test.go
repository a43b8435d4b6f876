package mtls_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/spiffe"
)

// needProgram returns the path of a program from a Debian package, skipping
// the test (naming the package) when it is missing, or failing when CI=true.
func needProgram(t *testing.T, prog, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found: install the Debian package %q (CI must have it)", prog, pkg)
	}
	t.Skipf("%s not found: install the Debian package %q to run this test", prog, pkg)
	return ""
}

type opensslResult struct {
	stdout, stderr string
	peer           spiffe.ID
	srvErr         error
}

// runSClient serves one connection with srv, greeting a verified peer,
// and connects openssl s_client to it with the given extra arguments.
func runSClient(t *testing.T, openssl string, srv *tls.Config, args ...string) opensslResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	addr, wait := serveOne(t, ctx, srv, func(peer spiffe.ID) string { return "hello " + peer.String() + "\n" })

	cmdArgs := append([]string{"s_client", "-connect", addr, "-tls1_3", "-quiet"}, args...)
	cmd := exec.CommandContext(ctx, openssl, cmdArgs...)
	// -quiet implies -ign_eof: s_client stays until the server closes.
	cmd.Stdin = strings.NewReader("")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run() // the exit status differs between openssl versions; judge by what was exchanged
	var res opensslResult
	res.peer, _, res.srvErr = wait()
	res.stdout, res.stderr = stdout.String(), stderr.String()
	return res
}

func TestOpenSSLInterop(t *testing.T) {
	openssl := needProgram(t, "openssl", "openssl")
	ca := mtlstest.MustNew("example.org")
	srvSrc := ca.Source("/server")
	srv := mustServer(t, &mtls.Config{SVID: srvSrc, Bundle: srvSrc})

	dir := t.TempDir()
	files, err := mtlstest.WritePEM(dir, "client", ca.Intermediate().Issue("/openssl-client"), ca.Bundle())
	require.NoError(t, err)

	t.Run("with client certificate", func(t *testing.T) {
		r := runSClient(t, openssl, srv,
			"-cert", files.Cert, "-cert_chain", files.Cert, "-key", files.Key, "-CAfile", files.Bundle, "-verify_return_error")
		require.NoError(t, r.srvErr, "openssl stderr: %s", r.stderr)
		assert.Equal(t, "spiffe://example.org/openssl-client", r.peer.String())
		assert.Contains(t, r.stdout, "hello spiffe://example.org/openssl-client")
	})

	t.Run("without client certificate", func(t *testing.T) {
		r := runSClient(t, openssl, srv, "-CAfile", files.Bundle, "-verify_return_error")
		require.Error(t, r.srvErr)
		assert.ErrorIs(t, r.srvErr, mtls.ErrNoPeerCertificate)
		assert.NotContains(t, r.stdout, "hello")
		assert.Contains(t, r.stderr, "alert bad certificate", "openssl reports the server's refusal")
	})

	t.Run("openssl refuses an untrusted server", func(t *testing.T) {
		rogue := mtlstest.MustNew("example.org").Source("/server")
		rogueSrv := mustServer(t, &mtls.Config{SVID: rogue, Bundle: rogue})
		r := runSClient(t, openssl, rogueSrv,
			"-cert", files.Cert, "-key", files.Key, "-CAfile", files.Bundle, "-verify_return_error")
		require.Error(t, r.srvErr)
		assert.Contains(t, []mtls.Reason{mtls.ReasonRejected, mtls.ReasonIO}, mtls.Classify(r.srvErr), "%v", r.srvErr)
		assert.NotContains(t, r.stdout, "hello")
		assert.Contains(t, r.stderr, "certificate verify failed")
	})
}
