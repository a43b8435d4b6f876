//go:build linux

package transparent_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sniffsplice/sniff/transparent"
)

// TestOriginalDstRedirect: in a network namespace of its own, an iptables
// (ip6tables) REDIRECT rule sends a connection for port 7001 to the
// listener on port 7002, as proxy-init's rules do; OriginalDst on the
// accepted conn reads port 7001 back, over IPv4, over IPv6, and over IPv4
// accepted IPv4-mapped by a dual-stack listener.
func TestOriginalDstRedirect(t *testing.T) {
	if os.Geteuid() != 0 {
		msg := "creates a network namespace and iptables rules: needs root"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	ip := needProgram(t, "ip", "iproute2")
	ns := fmt.Sprintf("sniff-transparent-%d", os.Getpid())
	run(t, ip, "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", ns).Run() })
	run(t, ip, "netns", "exec", ns, "ip", "link", "set", "lo", "up")

	for _, tc := range []struct{ name, tables, addr, listen string }{
		{"IPv4", "iptables", "127.0.0.1", "127.0.0.1:7002"},
		{"IPv6", "ip6tables", "::1", "[::1]:7002"},
		{"IPv4-on-dual-stack-listener", "iptables", "127.0.0.2", "[::]:7002"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tables := needProgram(t, tc.tables, "iptables")
			run(t, ip, "netns", "exec", ns, tables, "-t", "nat", "-A", "OUTPUT", "-p", "tcp",
				"-d", tc.addr, "--dport", "7001", "-j", "REDIRECT", "--to-ports", "7002")
			got, err := inNetns(ns, func() (netip.AddrPort, error) {
				ln, err := net.Listen("tcp", tc.listen)
				if err != nil {
					return netip.AddrPort{}, err
				}
				defer ln.Close()
				c, err := net.DialTimeout("tcp", net.JoinHostPort(tc.addr, "7001"), 30*time.Second)
				if err != nil {
					return netip.AddrPort{}, err
				}
				defer c.Close()
				a, err := ln.Accept()
				if err != nil {
					return netip.AddrPort{}, err
				}
				defer a.Close()
				// Through a wrapper with NetConn, as a replaying conn is.
				return transparent.OriginalDst(wrapped{a})
			})
			require.NoError(t, err)
			require.Equal(t, netip.MustParseAddrPort(net.JoinHostPort(tc.addr, "7001")), got)
		})
	}
}

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

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
}

// inNetns runs f on an OS thread moved into the named network namespace
// (sockets made there belong to it). The thread is not given back: its
// goroutine ends locked to it, so the runtime discards it.
func inNetns[T any](ns string, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked, see above
		var r result
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			r.err = err
			ch <- r
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			r.err = fmt.Errorf("setns %s: %w", ns, err)
			ch <- r
			return
		}
		r.v, r.err = f()
		ch <- r
	}()
	r := <-ch
	return r.v, r.err
}
