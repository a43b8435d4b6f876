package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/examples/internal/exampletest"
)

// TestBinary builds the command and runs it as a user would: bad flags are
// refused with exit status 2 and one clear line; a good command line
// serves, and SIGINT stops it with status 0.
func TestBinary(t *testing.T) {
	bin := exampletest.BuildProgram(t, ".")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-route", "a.*.test=127.0.0.1:9001"}, `sniproxy: bad command line: invalid value "a.*.test=127.0.0.1:9001" for flag -route: route "a.*.test=127.0.0.1:9001": name "a.*.test": '*' is only allowed as the whole first label (*.example.test) (see -h)` + "\n"},
		{nil, "sniproxy: bad command line: no routes: give at least one -route NAME=HOST:PORT or a -default HOST:PORT (see -h)\n"},
	} {
		require.Equal(t, tc.want, exampletest.RunRefused(t, bin, tc.args...))
	}

	var stdout bytes.Buffer
	cmd := exec.Command(bin, "-h")
	cmd.Stderr = &stdout
	require.NoError(t, cmd.Run(), "-h exits 0")
	require.Contains(t, stdout.String(), "Usage: sniproxy -route NAME=HOST:PORT")

	be := startBackend(t, "backend-a", "a.test")
	p, line := exampletest.StartProgram(t, "sniproxy: listening on ", bin, "-listen", "127.0.0.1:0", "-route", "a.test="+be.addr)
	addr := strings.TrimPrefix(line, "sniproxy: listening on ")
	c, br := dialTLS(t, addr, "a.test", be)
	converse(t, c, br, "backend-a: hello sni=a.test\n")
	out := p.Interrupt(t, "sniproxy: stopped\n")
	require.Contains(t, out, `sni="a.test" route=a.test backend=`+be.addr)
}
