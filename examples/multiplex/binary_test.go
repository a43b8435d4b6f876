package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/examples/internal/exampletest"
)

// TestBinary builds the command and runs it as a user would: a bad flag is
// refused with exit status 2 and one clear line; -addr 127.0.0.1:0 prints
// the bound address, serves, and SIGINT stops it with status 0.
func TestBinary(t *testing.T) {
	bin := exampletest.BuildProgram(t, ".")

	stderr := exampletest.RunRefused(t, bin, "-detect-timeout", "-3s")
	require.Equal(t, "multiplex: bad command line: -detect-timeout must not be negative (got -3s) (see -h)\n", stderr)

	p, line := exampletest.StartProgram(t, "multiplex: listening on ", bin, "-addr", "127.0.0.1:0")
	addr := strings.Fields(strings.TrimPrefix(line, "multiplex: listening on "))[0]
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	_, body := get(t, &http.Client{Transport: tr}, "http://"+addr+"/binary")
	require.Equal(t, "multiplex: GET /binary HTTP/1.1 tls=none\n", body)
	tr.CloseIdleConnections()

	out := p.Interrupt(t, "multiplex: stopped\n")
	require.Contains(t, out, ": HTTP/1 (matched")
}
