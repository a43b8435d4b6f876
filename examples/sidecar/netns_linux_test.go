//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/examples/internal/exampletest"
)

// The transparent-mode test: two network namespaces joined by a veth pair,
// iptables REDIRECT rules installed by proxy-init in each (as linkerd-init does
// in a pod), the sidecar binary running in each as its own uid, and unmodified
// clients (curl, redis-cli) that know nothing about the mesh. Every address is
// inside the namespaces the test creates; nothing outside them is touched.

const (
	proxyUID = 2102
	addrA    = "10.77.0.1" // the client "pod"
	addrB    = "10.77.0.2" // the server "pod"
)

// httpdEnv makes the test binary serve HTTP on the address it names (a
// backend started inside a namespace with ip netns exec).
const httpdEnv = "SIDECAR_TEST_HTTPD"

func init() {
	addr := os.Getenv(httpdEnv)
	if addr == "" {
		return
	}
	err := http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s from %s", r.URL.Path, r.RemoteAddr)
	}))
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

// requireNetAdmin skips unless the test may create namespaces (root), or
// fails under CI=true, which runs as root.
func requireNetAdmin(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "the transparent-mode test creates network namespaces and iptables rules: needs root"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	return string(out)
}

// inNS runs a program inside namespace ns, in its own process group, until
// the test ends.
func inNS(t *testing.T, ns string, args ...string) *exampletest.Buffer {
	t.Helper()
	var out exampletest.Buffer
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	return &out
}

// waitListen waits until something listens on addr inside ns.
func waitListen(t *testing.T, ns, addr string, out *exampletest.Buffer) {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	require.Eventually(t, func() bool {
		o, _ := exec.Command("ip", "netns", "exec", ns, "ss", "-Htln", "sport", "= :"+port).CombinedOutput()
		return strings.Contains(string(o), ":"+port)
	}, 30*time.Second, 50*time.Millisecond, "nothing listens on %s in %s:\n%s", addr, ns, out.String())
}

func build(t *testing.T, dir, pkg string) string {
	t.Helper()
	bin := filepath.Join(dir, filepath.Base(pkg))
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	sh(t, goTool, "build", "-o", bin, pkg)
	return bin
}

func TestTransparentNetns(t *testing.T) {
	requireNetAdmin(t)
	exampletest.RequireProgram(t, "ip", "iproute2")
	exampletest.RequireProgram(t, "ss", "iproute2")
	exampletest.RequireProgram(t, "iptables", "iptables")
	exampletest.RequireProgram(t, "setpriv", "util-linux")
	curl := exampletest.RequireProgram(t, "curl", "curl")
	redisCLI := exampletest.RequireProgram(t, "redis-cli", "redis-tools")
	redisServer := exampletest.RequireProgram(t, "redis-server", "redis-server")

	dir, err := os.MkdirTemp("", "sidecar-netns-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	sidecar := build(t, dir, "github.com/sniffsplice/sniff/examples/sidecar")
	proxyInit := build(t, dir, "github.com/sniffsplice/sniff/examples/sidecar/proxy-init")
	cf, sf := identities(t)
	for _, f := range append(cf, sf...) {
		if strings.HasPrefix(f, "/") { // the certificate files: make their directories traversable by the proxy uid
			for d := filepath.Dir(f); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
				os.Chmod(d, 0o755)
			}
		}
	}

	// Two "pods": namespaces joined by a veth pair created inside them.
	nsA := fmt.Sprintf("sidecar-a-%d", os.Getpid())
	nsB := fmt.Sprintf("sidecar-b-%d", os.Getpid())
	for _, ns := range []string{nsA, nsB} {
		sh(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		sh(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	sh(t, "ip", "-n", nsA, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", nsB)
	sh(t, "ip", "-n", nsA, "addr", "add", addrA+"/24", "dev", "eth0")
	sh(t, "ip", "-n", nsB, "addr", "add", addrB+"/24", "dev", "eth0")
	sh(t, "ip", "-n", nsA, "link", "set", "eth0", "up")
	sh(t, "ip", "-n", nsB, "link", "set", "eth0", "up")

	// linkerd-init's rules, by proxy-init: port 8081 is skipped both ways.
	policy := filepath.Join(dir, "annotations")
	require.NoError(t, os.WriteFile(policy, []byte(
		"config.linkerd.io/skip-outbound-ports: \"8081\"\nconfig.linkerd.io/skip-inbound-ports: \"8081,4191\"\n"), 0o644))
	for _, ns := range []string{nsA, nsB} {
		sh(t, proxyInit, "-netns", ns, "-proxy-uid", fmt.Sprint(proxyUID), "-policy", policy)
	}

	// Backends in pod B: HTTP on 8080 (meshed) and 8081 (skipped), Redis on 6379.
	self, err := os.Executable()
	require.NoError(t, err)
	for _, port := range []string{"8080", "8081"} {
		out := inNS(t, nsB, "env", httpdEnv+"=0.0.0.0:"+port, self, "-test.run=^$")
		waitListen(t, nsB, "0.0.0.0:"+port, out)
	}
	rout := inNS(t, nsB, redisServer, "--port", "6379", "--bind", "0.0.0.0", "--protected-mode", "no",
		"--save", "", "--appendonly", "no", "--dir", dir)
	waitListen(t, nsB, "0.0.0.0:6379", rout)

	// The sidecars, as the proxy uid that the rules exempt.
	asProxy := []string{"setpriv", "--reuid", fmt.Sprint(proxyUID), "--regid", fmt.Sprint(proxyUID), "--clear-groups", sidecar, "-v"}
	outA := inNS(t, nsA, append(append(asProxy, cf...), "-outbound", "127.0.0.1:4140", "-admin", "127.0.0.1:4191",
		"-peer-id", serverID, "-policy", policy)...)
	outB := inNS(t, nsB, append(append(asProxy, sf...), "-inbound", "0.0.0.0:4143", "-inbound-transparent",
		"-admin", "127.0.0.1:4191", "-allow", clientID, "-policy", policy)...)
	waitListen(t, nsA, "127.0.0.1:4140", outA)
	waitListen(t, nsB, "0.0.0.0:4143", outB)
	defer func() {
		if t.Failed() {
			t.Logf("sidecar A:\n%s\nsidecar B:\n%s", outA.String(), outB.String())
		}
	}()

	curlIn := func(ns string, asUID bool, url string) string {
		args := []string{"netns", "exec", ns}
		if asUID {
			args = append(args, "setpriv", "--reuid", fmt.Sprint(proxyUID), "--regid", fmt.Sprint(proxyUID), "--clear-groups")
		}
		return sh(t, "ip", append(args, curl, "-sS", "--max-time", "20", url)...)
	}

	// An unmodified curl in pod A to pod B's port 8080: redirected to sidecar
	// A (SO_ORIGINAL_DST), mTLS to sidecar B, and the backend sees sidecar B's
	// loopback connection.
	require.Regexp(t, `^hello /meshed from 127\.0\.0\.1:\d+$`, curlIn(nsA, false, "http://"+addrB+":8080/meshed"))
	// Port 8081 is a skip port: RETURN rules on both sides, the backend sees
	// pod A's address.
	require.Regexp(t, `^hello /skipped from 10\.77\.0\.1:\d+$`, curlIn(nsA, false, "http://"+addrB+":8081/skipped"))
	// redis-cli to 6379 (opaque by Linkerd's default list).
	redis := func(args ...string) string {
		return sh(t, "ip", append([]string{"netns", "exec", nsA, redisCLI, "-h", addrB, "-p", "6379"}, args...)...)
	}
	require.Equal(t, "OK\n", redis("SET", "mesh", "transparent"))
	require.Equal(t, "transparent\n", redis("GET", "mesh"))
	require.Contains(t, redis("CLIENT", "INFO"), "addr=127.0.0.1:")
	// A client that bypasses sidecar A (it runs as the proxy uid) reaches
	// sidecar B's inbound redirect unmeshed: local policy and detection.
	require.Regexp(t, `^hello /unmeshed from 127\.0\.0\.1:\d+$`, curlIn(nsA, true, "http://"+addrB+":8080/unmeshed"))

	// The sidecars saw exactly what they should: A carried the HTTP and the
	// three Redis connections outbound, never the skipped one.
	metricsA := curlIn(nsA, false, "http://127.0.0.1:4191/metrics")
	require.Contains(t, metricsA, `tcp_open_total{direction="outbound",protocol="HTTP/1",tls="true"} 1`)
	require.Contains(t, metricsA, `tcp_open_total{direction="outbound",protocol="opaque",tls="true"} 3`)
	require.Contains(t, metricsA, `request_total{authority="`+addrB+`:8080",direction="outbound",route=""} 1`)
	metricsB := curlIn(nsB, false, "http://127.0.0.1:4191/metrics")
	require.Contains(t, metricsB, `tcp_open_total{direction="inbound",protocol="HTTP/1",tls="false"} 1`)
	require.Contains(t, metricsB, `tcp_open_total{direction="inbound",protocol="HTTP/1",tls="true"} 1`)
	// Both HTTP requests (meshed and unmeshed) were served at the HTTP layer.
	require.Contains(t, metricsB, `request_total{authority="`+addrB+`:8080",direction="inbound",route=""} 2`)
	require.Contains(t, metricsB, `response_total{authority="`+addrB+`:8080",classification="success",direction="inbound",grpc_status="",route="",status_code="200"} 2`)
	require.NotContains(t, outA.String(), "/skipped")
	require.Contains(t, outA.String(), "dst="+addrB+":8080 protocol=HTTP/1 path=detect peer="+serverID)
	require.Contains(t, outA.String(), "dst="+addrB+":6379 protocol=unknown path=opaque peer="+serverID)
	require.Contains(t, outB.String(), "dst=127.0.0.1:8080 protocol=HTTP/1 path=detect peer= ")
}
