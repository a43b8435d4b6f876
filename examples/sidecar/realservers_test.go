package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
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

// daemon starts a server, killed when the test ends, on a free port of
// loopback, and returns the port once the server answers there: ready(pid,
// port) sends it a request of its own protocol and checks that the answer
// names this instance (its pid, socket or data directory).
//
// A TCP connect is no proof. The port was free when freePort picked it, but
// any process (other test binaries run beside this one) may bind it before
// the server does: the server then exits ("Address already in use") and the
// connect reaches the other process's listener. And a server listens before
// it is initialised. A server that exits because its port was taken is
// started again on another port, at most 5 times in all.
func daemon(t *testing.T, name string, args func(port int) []string, ready func(pid, port int) error) int {
	t.Helper()
	return daemonOn(t, func() int { return freePort(t) }, name, args, ready)
}

// daemonOn is daemon with the ports to try drawn from next.
func daemonOn(t *testing.T, next func() int, name string, args func(port int) []string, ready func(pid, port int) error) int {
	t.Helper()
	const attempts = 5
start:
	for attempt := 1; ; attempt++ {
		port := next()
		argv := args(port)
		var out exampletest.Buffer
		cmd := exec.Command(name, argv...)
		cmd.Stdout, cmd.Stderr = &out, &out
		// Its own process group, so the kill reaches children (runuser -> postgres).
		cmd.SysProcAttr = ownProcessGroup()
		cmd.WaitDelay = 5 * time.Second
		require.NoError(t, cmd.Start())
		var werr error
		exited := make(chan struct{})
		go func() { werr = cmd.Wait(); close(exited) }()
		// Its group is killed once: at the end of the test, or as soon as
		// the server is seen to exit (its children with it, while the group's
		// id cannot have been reused).
		stop := sync.OnceFunc(func() {
			killGroup(cmd)
			<-exited
		})
		t.Cleanup(func() {
			stop()
			if t.Failed() {
				t.Logf("%s %q output:\n%s", name, argv, out.String())
			}
		})
		deadline := time.Now().Add(60 * time.Second)
		for {
			err := ready(cmd.Process.Pid, port)
			if err == nil {
				return port
			}
			select {
			case <-exited:
				stop()
				if attempt < attempts && strings.Contains(out.String(), "already in use") {
					t.Logf("%s: port %d was taken after it was picked (%v); another port", name, port, werr)
					continue start
				}
				t.Fatalf("%s exited (%v) before it answered on port %d: %v (its output is logged below)", name, werr, port, err)
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not answer on port %d within 60 s: %v (its output is logged below)", name, port, err)
			}
		}
	}
}

// probe runs a client once, for at most 10 s, and returns what it printed.
func probe(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %q: %w: %s", filepath.Base(name), args, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// answers checks that a probe's output has the line want: the server that
// answered is the one started.
func answers(out string, err error, want string) error {
	if err != nil {
		return err
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == want {
			return nil
		}
	}
	return fmt.Errorf("answered by another server: no line %q in %q", want, out)
}

// memcachedStats checks that memcached process pid answers "stats" on port.
func memcachedStats(pid, port int) error {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "stats\r\n"); err != nil {
		return err
	}
	var seen strings.Builder
	sc := bufio.NewScanner(c)
	for sc.Scan() && sc.Text() != "END" {
		seen.WriteString(sc.Text() + "\n")
	}
	return answers(seen.String(), sc.Err(), fmt.Sprintf("STAT pid %d", pid))
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
	dir := t.TempDir()
	port := daemon(t, srv, func(port int) []string {
		return []string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--protected-mode", "no"}
	}, func(pid, port int) error {
		out, err := probe(cli, "-h", "127.0.0.1", "-p", fmt.Sprint(port), "INFO", "server")
		return answers(out, err, fmt.Sprintf("process_id:%d", pid))
	})
	addr, _, _ := pair(t, addrPort(port), "-policy", opaquePolicy(t, port))
	h, p := splitAddr(t, addr)
	require.Equal(t, "OK\n", runClient(t, 20*time.Second, cli, "-h", h, "-p", p, "SET", "mesh:key", "through two sidecars"))
	require.Equal(t, "through two sidecars\n", runClient(t, 20*time.Second, cli, "-h", h, "-p", p, "GET", "mesh:key"))
	// The server saw the inbound sidecar as its client, not redis-cli.
	require.Contains(t, runClient(t, 20*time.Second, cli, "-h", h, "-p", p, "CLIENT", "INFO"), "addr=127.0.0.1:")
	redisValues(t, addr)
}

// redisValues sets and gets, on one connection through the pair, values of
// sizes around the relay's buffers: the 1-KiB wait buffer of a direction
// that reads the sidecars' TLS connection, a TLS record's 16 KiB, and
// several records. Each request and each answer crosses the mutual-TLS hop
// whole or in parts, and must arrive byte for byte.
func redisValues(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
	r := bufio.NewReader(c)
	for _, n := range []int{1, 1000, 1023, 1024, 1025, 4096, 16383, 16384, 16385, 65536, 300000} {
		v := make([]byte, n)
		for i := range v {
			v[i] = 'a' + byte((i*7+n)%26)
		}
		key := fmt.Sprintf("mesh:value:%d", n)
		_, err := fmt.Fprintf(c, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(key), key, n, v)
		require.NoError(t, err)
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "+OK\r\n", line, "SET of %d bytes", n)
		_, err = fmt.Fprintf(c, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(key), key)
		require.NoError(t, err)
		line, err = r.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("$%d\r\n", n), line, "GET of %d bytes", n)
		got := make([]byte, n+2)
		_, err = io.ReadFull(r, got)
		require.NoError(t, err)
		require.Equal(t, string(v)+"\r\n", string(got), "GET of %d bytes", n)
	}
}

func TestMemcached(t *testing.T) {
	srv := program(t, "memcached", "memcached")
	port := daemon(t, srv, func(port int) []string {
		return []string{"-l", "127.0.0.1", "-p", fmt.Sprint(port), "-U", "0", "-u", "root", "-m", "16"}
	}, memcachedStats)
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
	port := daemon(t, runuser, func(port int) []string {
		return []string{"-u", "postgres", "--", postgres, "-D", data, "-p", fmt.Sprint(port), "-k", dir,
			"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"}
	}, func(_, port int) error {
		out, err := probe(psql, "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-U", "postgres", "-d", "postgres", "-At",
			"-c", "show data_directory")
		return answers(out, err, data)
	})
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

// mariadb starts a MariaDB server in a temporary directory and returns its
// port, once the server answers a query there itself.
func mariadb(t *testing.T) int {
	t.Helper()
	return mariadbOn(t, func() int { return freePort(t) })
}

// mariadbOn is mariadb with the ports to try drawn from next.
func mariadbOn(t *testing.T, next func() int) int {
	t.Helper()
	install := program(t, "mariadb-install-db", "mariadb-server")
	server := program(t, "mariadbd", "mariadb-server")
	client := program(t, "mariadb", "mariadb-client")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	sock := filepath.Join(dir, "mysqld.sock")
	runClient(t, 120*time.Second, install, "--no-defaults", "--datadir="+data, "--user=root",
		"--auth-root-authentication-method=normal", "--skip-test-db")
	return daemonOn(t, next, server, func(port int) []string {
		return []string{"--no-defaults", "--datadir=" + data, "--socket=" + sock,
			"--port=" + fmt.Sprint(port), "--bind-address=127.0.0.1", "--user=root", "--skip-grant-tables",
			"--pid-file=" + filepath.Join(dir, "mysqld.pid"), "--skip-log-bin", "--innodb-buffer-pool-size=16M"}
	}, func(_, port int) error {
		// Over TCP, the way the sidecar reaches it; the socket path names this instance.
		out, err := probe(client, "--no-defaults", "--protocol=TCP", "-h", "127.0.0.1", "-P", fmt.Sprint(port),
			"-u", "root", "-N", "-B", "-e", "select @@socket")
		return answers(out, err, sock)
	})
}

// TestServerPortTaken: another process binds the port picked for a server
// before the server does (in CI, one of the test binaries running beside
// this one), here a listener that accepts and closes. The server exits
// ("Address already in use"); the fixture must not take the other listener
// for it, or the client behind the sidecars is closed without a greeting
// ("Lost connection to server at 'handshake: reading initial communication
// packet'", as TestMariaDBWithoutRace once failed in CI). It starts the
// server on another port, where it answers itself.
func TestServerPortTaken(t *testing.T) {
	client := program(t, "mariadb", "mariadb-client")
	other, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepting := make(chan struct{})
	go func() {
		defer close(accepting)
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	defer func() {
		other.Close()
		<-accepting
	}()
	taken := other.Addr().(*net.TCPAddr).Port
	picked := 0
	port := mariadbOn(t, func() int {
		if picked++; picked == 1 {
			return taken
		}
		return freePort(t)
	})
	require.NotEqual(t, taken, port, "the fixture took another process's listener for the server")
	require.Equal(t, 2, picked)
	out := runClient(t, 30*time.Second, client, "--no-defaults", "--protocol=TCP", "-h", "127.0.0.1", "-P", fmt.Sprint(port),
		"-u", "root", "-N", "-B", "-e", "select 1")
	require.Equal(t, "1\n", out)
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
