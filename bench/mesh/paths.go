//go:build linux

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sniffsplice/sniff/mtls/mtlstest"
)

// The paths a request can take from the load generator to the backend, and
// the processes that make them.

// pathInfo names a path and what it is compared with.
type pathInfo struct {
	name  string // flag value
	title string // table row
	// versus is the path this one is compared with in the ratio columns
	// ("" for none).
	versus string
}

var allPaths = []pathInfo{
	{"direct", "direct (no proxy, the limit)", ""},
	{"sidecar-http", "**sidecars, HTTP layer** (detect → HTTP on both)", "haproxy-http"},
	{"haproxy-http", "HAProxy 2.6 pair, `mode http`", ""},
	{"sidecar-opaque", "**sidecars, port declared opaque** (spliced over mTLS)", "haproxy-tcp"},
	{"haproxy-tcp", "HAProxy 2.6 pair, `mode tcp`", ""},
	{"haproxy-http-again", "HAProxy `mode http` pair again (A/A control)", "haproxy-http"},
}

// infoOf returns the path called name. A sidecar path may name another
// build of the sidecar after a '+': sidecar-http+h2 is sidecar-http with the
// binary that -alt gives for h2.
func infoOf(name string) (pathInfo, bool) {
	base, alt, isAlt := strings.Cut(name, "+")
	for _, p := range allPaths {
		if p.name != base {
			continue
		}
		if isAlt {
			if !strings.HasPrefix(base, "sidecar-") || altBinaries[alt] == "" {
				return pathInfo{}, false
			}
			p.name, p.title = name, p.title+" ["+alt+"]"
		}
		return p, true
	}
	return pathInfo{}, false
}

// altBinaries are other builds of the sidecar, by label (-alt).
var altBinaries = map[string]string{}

// identities is the throw-away CA's files: one SVID for the client-side
// proxy, one for the server-side proxy, the trust bundle, and the same
// certificates and keys as HAProxy wants them (chain and key in one file).
type identities struct {
	clientID, serverID string
	client, server     mtlstest.Files
	clientPEM          string // HAProxy crt: chain + key
	serverPEM          string
}

func writeIdentities(dir string) (*identities, error) {
	ca, err := mtlstest.New("mesh.bench")
	if err != nil {
		return nil, err
	}
	id := &identities{
		clientID: "spiffe://mesh.bench/ns/default/sa/client",
		serverID: "spiffe://mesh.bench/ns/default/sa/server",
	}
	if id.client, err = mtlstest.WritePEM(dir, "client", ca.Issue(id.clientID), ca.Bundle()); err != nil {
		return nil, err
	}
	if id.server, err = mtlstest.WritePEM(dir, "server", ca.Issue(id.serverID), ca.Bundle()); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		files mtlstest.Files
		dst   *string
	}{{id.client, &id.clientPEM}, {id.server, &id.serverPEM}} {
		crt, err := os.ReadFile(c.files.Cert)
		if err != nil {
			return nil, err
		}
		key, err := os.ReadFile(c.files.Key)
		if err != nil {
			return nil, err
		}
		*c.dst = strings.TrimSuffix(c.files.Cert, ".crt") + "-haproxy.pem"
		if err := os.WriteFile(*c.dst, append(crt, key...), 0o600); err != nil {
			return nil, err
		}
	}
	return id, nil
}

// proc is one started process.
type proc struct {
	cmd  *exec.Cmd
	logs *tail
}

func (p *proc) stop() {
	if p == nil || p.cmd == nil || p.cmd.Process == nil {
		return
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	p.cmd.Wait()
}

// path is a running path: where the load generator connects and the proxy
// processes whose CPU and memory are counted.
type path struct {
	info  pathInfo
	addr  string
	procs []*proc
}

func (p *path) pids() []int {
	var out []int
	for _, pr := range p.procs {
		out = append(out, pr.cmd.Process.Pid)
	}
	return out
}

func (p *path) stop() {
	for _, pr := range p.procs {
		pr.stop()
	}
}

// alive reports an error when one of the path's processes has exited.
func (p *path) alive() error {
	for _, pr := range p.procs {
		f := statFields(pr.cmd.Process.Pid)
		if len(f) == 0 || f[0] == "Z" {
			return fmt.Errorf("%s: process %s exited:\n%s", p.info.name, filepath.Base(pr.cmd.Path), pr.logs)
		}
	}
	return nil
}

// tail keeps the last bytes a process wrote to stderr, for error messages.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// starter starts the paths against one backend with one set of identities.
type starter struct {
	dir     string
	sidecar string   // the examples/sidecar binary
	extra   []string // more flags for both sidecars
	env     []string // more environment for both sidecars
	ids     *identities
	backend string // host:port
}

func (s *starter) start(name string) (*path, error) {
	info, ok := infoOf(name)
	if !ok {
		return nil, fmt.Errorf("unknown path %q", name)
	}
	p := &path{info: info}
	var err error
	switch name {
	case "direct":
		p.addr = s.backend
	case "sidecar-http", "sidecar-opaque":
		err = s.sidecars(p, s.sidecar, name == "sidecar-opaque")
	case "haproxy-http", "haproxy-http-again":
		err = s.haproxies(p, "http")
	case "haproxy-tcp":
		err = s.haproxies(p, "tcp")
	default: // sidecar-*+label
		base, alt, _ := strings.Cut(name, "+")
		err = s.sidecars(p, altBinaries[alt], base == "sidecar-opaque")
	}
	if err != nil {
		p.stop()
		return nil, err
	}
	// One request through, so every process has done its first work (TLS
	// between the proxies, pools) before anything is measured.
	if err := getOK(p.addr); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s: first request: %w", name, err)
	}
	return p, nil
}

var listeningRe = regexp.MustCompile(`(inbound|forward)=([0-9.:]+)`)

// startSidecar runs the sidecar binary with args and returns the process and
// the addresses it printed (inbound=..., forward=...->...).
func (s *starter) startSidecar(bin string, args ...string) (*proc, map[string]string, error) {
	cmd := exec.Command(bin, append(args, s.extra...)...)
	cmd.Env = append(os.Environ(), s.env...)
	logs := &tail{}
	cmd.Stderr = logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	pr := &proc{cmd: cmd, logs: logs}
	lines := make(chan string, 1)
	go func() {
		br := bufio.NewReader(out)
		l, _ := br.ReadString('\n')
		lines <- l
		io.Copy(io.Discard, br)
	}()
	select {
	case l := <-lines:
		addrs := map[string]string{}
		for _, m := range listeningRe.FindAllStringSubmatch(l, -1) {
			addrs[m[1]] = m[2]
		}
		if len(addrs) == 0 {
			pr.stop()
			return nil, nil, fmt.Errorf("sidecar %q printed %q:\n%s", args, l, logs)
		}
		return pr, addrs, nil
	case <-time.After(30 * time.Second):
		pr.stop()
		return nil, nil, fmt.Errorf("sidecar %q did not start:\n%s", args, logs)
	}
}

// sidecars starts, from the binary bin, sidecar B (inbound, in front of the backend) and sidecar
// A (an explicit outbound listener for the backend, B as its peer), both
// with the port declared opaque when opaquePort is set.
func (s *starter) sidecars(p *path, bin string, opaquePort bool) error {
	var pol []string
	if opaquePort {
		_, port, _ := net.SplitHostPort(s.backend)
		pol = []string{"-opaque-ports", port}
	}
	b, addrs, err := s.startSidecar(bin, append([]string{"-cert", s.ids.server.Cert, "-key", s.ids.server.Key,
		"-bundle", s.ids.server.Bundle, "-inbound", "127.0.0.1:0", "-allow", s.ids.clientID}, pol...)...)
	if err != nil {
		return err
	}
	p.procs = append(p.procs, b)
	a, aaddrs, err := s.startSidecar(bin, append([]string{"-cert", s.ids.client.Cert, "-key", s.ids.client.Key,
		"-bundle", s.ids.client.Bundle, "-forward", "127.0.0.1:0=" + s.backend,
		"-peer", addrs["inbound"], "-peer-id", s.ids.serverID}, pol...)...)
	if err != nil {
		return err
	}
	p.procs = append(p.procs, a)
	p.addr = aaddrs["forward"]
	return nil
}

// haproxies starts two HAProxy processes in mode (http or tcp): the
// client-side one takes plain connections and opens mutual TLS 1.3 to the
// server-side one (verify required against the CA's bundle, its own client
// certificate), which forwards to the backend. Everything else is
// HAProxy's default, as a user would run it.
func (s *starter) haproxies(p *path, mode string) error {
	front, back := freePort(), freePort()
	common := fmt.Sprintf(`global
    ulimit-n 20000
    maxconn 9900
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-server-options ssl-min-ver TLSv1.3
defaults
    mode %s
    maxconn 9900
    timeout connect 5s
    timeout client 1h
    timeout server 1h
`, mode)
	backCfg := common + fmt.Sprintf(`frontend in
    bind 127.0.0.1:%d ssl crt %s ca-file %s verify required
    default_backend app
backend app
    server app %s
`, back, s.ids.serverPEM, s.ids.server.Bundle, s.backend)
	frontCfg := common + fmt.Sprintf(`frontend out
    bind 127.0.0.1:%d
    default_backend peer
backend peer
    server peer 127.0.0.1:%d ssl crt %s ca-file %s verify required
`, front, back, s.ids.clientPEM, s.ids.client.Bundle)
	for _, c := range []struct {
		cfg  string
		port int
	}{{backCfg, back}, {frontCfg, front}} {
		f := filepath.Join(s.dir, fmt.Sprintf("haproxy-%d.cfg", c.port))
		if err := os.WriteFile(f, []byte(c.cfg), 0o600); err != nil {
			return err
		}
		cmd := exec.Command("haproxy", "-db", "-f", f)
		logs := &tail{}
		cmd.Stdout, cmd.Stderr = logs, logs
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			return err
		}
		p.procs = append(p.procs, &proc{cmd: cmd, logs: logs})
		if err := waitListening(fmt.Sprintf("127.0.0.1:%d", c.port)); err != nil {
			return fmt.Errorf("haproxy: %w:\n%s", err, logs)
		}
	}
	p.addr = fmt.Sprintf("127.0.0.1:%d", front)
	return nil
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitListening(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s", addr)
}

// getOK makes one HTTP/1.1 request to addr on a new connection and checks
// the backend's answer came back.
func getOK(addr string) error {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 || string(b) != backendBody {
		return fmt.Errorf("got %d %q", resp.StatusCode, b)
	}
	return nil
}

// backendBody is what the backend answers to every request.
const backendBody = "hello from the backend\n"

// bulkPrefix asks the backend for a longer answer: GET /bulk/N is answered
// with N bytes (at most maxBulk).
const (
	bulkPrefix = "/bulk/"
	maxBulk    = 64 << 20
)

// serveBackend is the backend process: a net/http server speaking HTTP/1.1
// and h2c that answers every request with backendBody, and GET /bulk/N with
// N bytes. It prints its address and serves until killed.
func serveBackend() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	fmt.Println(ln.Addr())
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	body := []byte(backendBody)
	chunk := make([]byte, 64<<10)
	srv := &http.Server{
		Protocols: &protos,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			if n, ok := strings.CutPrefix(r.URL.Path, bulkPrefix); ok {
				size, err := strconv.Atoi(n)
				if err != nil || size < 0 || size > maxBulk {
					http.Error(w, "bad size", http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Length", n)
				for size > 0 {
					k, err := w.Write(chunk[:min(size, len(chunk))])
					if err != nil {
						return
					}
					size -= k
				}
				return
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body)
		}),
	}
	fatal(srv.Serve(ln))
}

// startBackend runs this program again as the backend process.
func startBackend() (*proc, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(self, "-serve-backend")
	logs := &tail{}
	cmd.Stderr = logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	pr := &proc{cmd: cmd, logs: logs}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		pr.stop()
		return nil, "", errors.Join(err, errors.New(logs.String()))
	}
	return pr, strings.TrimSpace(line), nil
}
