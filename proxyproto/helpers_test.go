package proxyproto_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// needProgram returns the path of prog, skipping the test (naming the
// Debian package) when it is missing, or failing it when CI=true.
func needProgram(t *testing.T, prog, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (Debian package %s) and CI=true", prog, pkg)
		}
		t.Skipf("%s not found: install the Debian package %s", prog, pkg)
	}
	return p
}

// tcpPair returns a connected loopback client and server on network
// ("tcp4" on 127.0.0.1 or "tcp6" on ::1).
func tcpPair(t testing.TB, network string) (client, server *net.TCPConn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "tcp6" {
		addr = "[::1]:0"
	}
	ln, err := net.Listen(network, addr)
	require.NoError(t, err)
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	c, err := net.Dial(network, ln.Addr().String())
	require.NoError(t, err)
	r := <-ch
	require.NoError(t, r.err)
	t.Cleanup(func() { c.Close(); r.c.Close() })
	return c.(*net.TCPConn), r.c.(*net.TCPConn)
}

// freePort returns a TCP port that was free on host a moment ago.
func freePort(t *testing.T, host string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitListening waits until something listens on TCP port (IPv4 or IPv6),
// reading /proc/net/tcp{,6}, so that no test connection is made to find
// out.
func waitListening(t *testing.T, port int, why func() string) {
	t.Helper()
	want := fmt.Sprintf(":%04X", port)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
			fh, err := os.Open(f)
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(fh)
			for sc.Scan() {
				fields := strings.Fields(sc.Text())
				// sl local_address rem_address st ...; st 0A is LISTEN.
				if len(fields) > 3 && strings.HasSuffix(fields[1], want) && fields[3] == "0A" {
					fh.Close()
					return
				}
			}
			fh.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing listens on port %s after 15s: %s", strconv.Itoa(port), why())
}
