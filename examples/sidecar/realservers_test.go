package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/examples/internal/exampletest"
)

// Real servers from Debian's packages behind two sidecars with mutual TLS,
// each driven by its own client, the data checked. Every server is started on
// loopback with an ephemeral port and a temporary directory, and killed when
// the test ends.

// program finds a Debian program, also in the sbin and versioned directories
// a non-root PATH may lack; it skips (or fails under CI=true) naming the package.
func program(t *testing.T, name, pkg string, globs ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, g := range append([]string{"/usr/sbin/" + name, "/sbin/" + name}, globs...) {
		m, _ := filepath.Glob(g)
		sort.Strings(m)
		if len(m) > 0 {
			return m[len(m)-1]
		}
	}
	return exampletest.RequireProgram(t, name, pkg)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// daemon starts a server process that is killed when the test ends, and
// waits until it accepts TCP connections on port.
func daemon(t *testing.T, port int, name string, args ...string) {
	t.Helper()
	var out exampletest.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so the kill reaches children (runuser -> postgres).
	cmd.SysProcAttr = ownProcessGroup()
	cmd.WaitDelay = 5 * time.Second
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		killGroup(cmd)
		<-exited
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("%s exited: %v\n%s", name, err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %d\n%s", name, port, out.String())
		}
	}
}

func runClient(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	require.NoError(t, err, "%s %q:\n%s", name, args, out)
	return string(out)
}

func addrPort(port int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))
}

func splitAddr(t *testing.T, addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	return h, p
}

// opaquePolicy writes a policy file declaring port opaque, in Linkerd's words.
func opaquePolicy(t *testing.T, port int) string {
	p := filepath.Join(t.TempDir(), "annotations")
	require.NoError(t, os.WriteFile(p, []byte(fmt.Sprintf("config.linkerd.io/opaque-ports: \"%d\"\n", port)), 0o644))
	return p
}

func TestRedisServer(t *testing.T) {
	srv := program(t, "redis-server", "redis-server")
	cli := program(t, "redis-cli", "redis-tools")
	port := freePort(t)
	daemon(t, port, srv, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--protected-mode", "no")
	addr, _, _ := pair(t, addrPort(port), "-policy", opaquePolicy(t, port))
	h, p := splitAddr(t, addr)
	require.Equal(t, "OK\n", runClient(t, 20*time.Second, cli, "-h", h, "-p", p, "SET", "mesh:key", "through two sidecars"))
	require.Equal(t, "through two sidecars\n", runClient(t, 20*time.Second, cli, "-h", h, "-p", p, "GET", "mesh:key"))
	// The server saw the inbound sidecar as its client, not redis-cli.
	require.Contains(t, runClient(t, 20*time.Second, cli, "-h", h, "-p", p, "CLIENT", "INFO"), "addr=127.0.0.1:")
}

func TestMemcached(t *testing.T) {
	srv := program(t, "memcached", "memcached")
	port := freePort(t)
	daemon(t, port, srv, "-l", "127.0.0.1", "-p", fmt.Sprint(port), "-U", "0", "-u", "root", "-m", "16")
	addr, _, _ := pair(t, addrPort(port), "-policy", opaquePolicy(t, port))
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	fmt.Fprintf(c, "set mesh 0 0 13\r\nhello, meshed\r\n")
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "STORED\r\n", line)
	fmt.Fprintf(c, "get mesh\r\n")
	for _, want := range []string{"VALUE mesh 0 13\r\n", "hello, meshed\r\n", "END\r\n"} {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, want, line)
	}
}

func TestPostgreSQL(t *testing.T) {
	initdb := program(t, "initdb", "postgresql", "/usr/lib/postgresql/*/bin/initdb")
	postgres := program(t, "postgres", "postgresql", "/usr/lib/postgresql/*/bin/postgres")
	runuser := program(t, "runuser", "util-linux")
	psql := program(t, "psql", "postgresql-client")
	if os.Geteuid() != 0 {
		t.Skip("PostgreSQL test runs the server as the postgres user with runuser: needs root")
	}
	dir, err := os.MkdirTemp("", "sidecar-pg-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	runClient(t, 30*time.Second, "chown", "postgres:postgres", dir)
	data := filepath.Join(dir, "data")
	runClient(t, 120*time.Second, runuser, "-u", "postgres", "--", initdb, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
	port := freePort(t)
	daemon(t, port, runuser, "-u", "postgres", "--", postgres, "-D", data, "-p", fmt.Sprint(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off")
	// Port not declared: the client speaks first (SSLRequest), detection says
	// "unknown" at its first byte and the connection is opaque.
	addr, _, _ := pair(t, addrPort(port))
	h, p := splitAddr(t, addr)
	out := runClient(t, 30*time.Second, psql, "-h", h, "-p", p, "-U", "postgres", "-d", "postgres", "-At",
		"-c", "create table mesh(v text); insert into mesh values ('through two sidecars'); select v from mesh;")
	require.Contains(t, out, "through two sidecars")
	out = runClient(t, 30*time.Second, psql, "-h", h, "-p", p, "-U", "postgres", "-d", "postgres", "-At", "-c", "select 40+2")
	require.Equal(t, "42\n", out)
}

// mariadb starts a MariaDB server in a temporary directory and returns its port.
func mariadb(t *testing.T) int {
	t.Helper()
	install := program(t, "mariadb-install-db", "mariadb-server")
	server := program(t, "mariadbd", "mariadb-server")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	runClient(t, 120*time.Second, install, "--no-defaults", "--datadir="+data, "--user=root",
		"--auth-root-authentication-method=normal", "--skip-test-db")
	port := freePort(t)
	daemon(t, port, server, "--no-defaults", "--datadir="+data, "--socket="+filepath.Join(dir, "mysqld.sock"),
		"--port="+fmt.Sprint(port), "--bind-address=127.0.0.1", "--user=root", "--skip-grant-tables",
		"--pid-file="+filepath.Join(dir, "mysqld.pid"), "--skip-log-bin", "--innodb-buffer-pool-size=16M")
	return port
}

func TestMariaDB(t *testing.T) {
	client := program(t, "mariadb", "mariadb-client")
	port := mariadb(t)

	// Declared opaque, as Linkerd requires for a server-speaks-first protocol.
	t.Run("opaque", func(t *testing.T) {
		addr, _, _ := pair(t, addrPort(port), "-policy", opaquePolicy(t, port))
		h, p := splitAddr(t, addr)
		out := runClient(t, 30*time.Second, client, "--no-defaults", "--protocol=TCP", "-h", h, "-P", p, "-u", "root",
			"-N", "-B", "-e", "select concat('through ', 'two sidecars')")
		require.Equal(t, "through two sidecars\n", out)
	})

	// Issue 8: the same port NOT declared opaque, with Linkerd's 10 s
	// detection timeout. The server greets first, the race notices at once:
	// the whole client session takes well under a second.
	t.Run("undeclared", func(t *testing.T) {
		addr, cli, _ := pair(t, addrPort(port), "-opaque-ports", "", "-detect-timeout", "10s")
		h, p := splitAddr(t, addr)
		for i := range 3 {
			start := time.Now()
			out := runClient(t, 30*time.Second, client, "--no-defaults", "--protocol=TCP", "-h", h, "-P", p, "-u", "root",
				"-N", "-B", "-e", "select 1")
			took := time.Since(start)
			require.Equal(t, "1\n", out)
			t.Logf("mariadb -e 'select 1' through two sidecars, port not opaque, run %d: %v", i, took)
			// Without the race this takes the 10 s detection timeout.
			require.Less(t, took, 2*time.Second)
		}
		_, body := get(t, "http://"+cli.AdminAddr.String()+"/metrics")
		require.Contains(t, body, `reason="server_first"`)
		require.Contains(t, body, `policy_decision_total{action="detect",direction="outbound"`)
	})
}

// TestMariaDBWithoutRace is the anchor to beat: with racing off (Linkerd's
// behaviour) the same session waits for the detection timeout (1 s here,
// 10 s by default), because the client says nothing until the server greets.
func TestMariaDBWithoutRace(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a detection timeout")
	}
	client := program(t, "mariadb", "mariadb-client")
	port := mariadb(t)
	addr, _, _ := pair(t, addrPort(port), "-opaque-ports", "", "-detect-timeout", "1s", "-no-race")
	h, p := splitAddr(t, addr)
	start := time.Now()
	out := runClient(t, 30*time.Second, client, "--no-defaults", "--protocol=TCP", "-h", h, "-P", p, "-u", "root",
		"-N", "-B", "-e", "select 1")
	took := time.Since(start)
	require.Equal(t, "1\n", out)
	t.Logf("without the race: %v", took)
	require.GreaterOrEqual(t, took, time.Second)
}
