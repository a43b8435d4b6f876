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
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sniffsplice/sniff/mtls/mtlstest"
)

// The sidecar target: client -> sidecar A (a -forward listener for the backend's port, which no
// policy declares: detection, the server-first race) -> mutual TLS -> sidecar B (inbound) -> a Go
// HTTP backend in this process. Attacks and the real client go to A's forward listener; A's
// /metrics and the memory figures are A's; B's handshake count is read from B's /metrics.
func init() { startSidecarPair = startSidecars }

var (
	backendOnce string
	fwdRE       = regexp.MustCompile(`forward=(\S+)->(\S+)`)
	inboundRE   = regexp.MustCompile(`inbound=(\S+)`)
	adminRE     = regexp.MustCompile(`admin=(\S+)`)
)

// backend serves GET / with a small body for every target started by this process.
func backend() (string, error) {
	if backendOnce != "" {
		return backendOnce, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" { // answers in a minute, unless the request ends first
			slowInFlight.Add(1)
			defer slowInFlight.Add(-1)
			select {
			case <-r.Context().Done():
				return
			case <-time.After(time.Minute):
			}
		}
		io.WriteString(w, "ok\n")
	}))
	backendOnce = ln.Addr().String()
	return backendOnce, nil
}

// greeter is a server that speaks first ("220 overload ready"), as SMTP or a database does, for
// the greeting scenario; it then reads until its client closes.
func greeter() (string, error) {
	if greeterOnce != "" {
		return greeterOnce, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, greeting)
				io.Copy(io.Discard, c)
			}()
		}
	}()
	greeterOnce = ln.Addr().String()
	return greeterOnce, nil
}

const greeting = "220 overload ready\r\n"

var greeterOnce string

// slowInFlight counts the backend's /slow requests still running.
var slowInFlight atomic.Int64

// pairB is the running inbound sidecar of the last pair started (for its handshake count).
var pairB *target

func startSidecars(nofile int) (*target, error) {
	if *sidecarBin == "" {
		return nil, errors.New("-sidecar not given")
	}
	be, err := backend()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "overload-pki")
	if err != nil {
		return nil, err
	}
	ca := mtlstest.MustNew("overload.test")
	fa, err := mtlstest.WritePEM(dir, "a", ca.Issue("/ns/default/sa/client"), ca.Bundle())
	if err != nil {
		return nil, err
	}
	fb, err := mtlstest.WritePEM(dir, "b", ca.Issue("/ns/default/sa/server"), ca.Bundle())
	if err != nil {
		return nil, err
	}
	b, err := startSidecar(0, "-inbound", "127.0.0.1:0", "-admin", "127.0.0.1:0",
		"-cert", fb.Cert, "-key", fb.Key, "-bundle", fb.Bundle, "-detect-timeout", detectTO.String())
	if err != nil {
		return nil, fmt.Errorf("sidecar B: %w", err)
	}
	gr, err := greeter()
	if err != nil {
		b.stop()
		return nil, err
	}
	a, err := startSidecar(nofile, "-forward", "127.0.0.1:0="+be, "-forward", "127.0.0.1:0="+gr, "-peer", b.addr, "-admin", "127.0.0.1:0",
		"-cert", fa.Cert, "-key", fa.Key, "-bundle", fa.Bundle, "-detect-timeout", detectTO.String())
	if err != nil {
		b.stop()
		return nil, fmt.Errorf("sidecar A: %w", err)
	}
	pairB = b
	stopA := a
	return &target{cmd: stopA.cmd, addr: a.addr, greet: a.forwards[gr], metrics: a.metrics, done: a.done, logs: a.logs, peer: b}, nil
}

// startSidecar starts one sidecar binary and reads its listening line: addr is its forward
// listener (A) or its inbound listener (B).
func startSidecar(nofile int, args ...string) (*target, error) {
	argv := append([]string{*sidecarBin}, args...)
	if nofile > 0 {
		argv = append([]string{"prlimit", fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "--"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	t := &target{cmd: cmd, done: make(chan error, 1), logs: &tail{}}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s := sc.Text()
			t.logs.add(s)
			if strings.Contains(s, " listening:") {
				select {
				case line <- s:
				default:
				}
			}
		}
	}()
	go func() { err := cmd.Wait(); t.exited.Store(true); t.done <- err }()
	select {
	case s := <-line:
		if ms := fwdRE.FindAllStringSubmatch(s, -1); ms != nil {
			t.addr = ms[0][1]
			t.forwards = map[string]string{}
			for _, m := range ms {
				t.forwards[m[2]] = m[1]
			}
		} else if m := inboundRE.FindStringSubmatch(s); m != nil {
			t.addr = m[1]
		}
		if m := adminRE.FindStringSubmatch(s); m != nil {
			t.metrics = "http://" + m[1] + "/metrics"
		}
	case err := <-t.done:
		return nil, fmt.Errorf("exited: %v\n%s", err, t.logs)
	case <-time.After(30 * time.Second):
		t.stop()
		return nil, errors.New("did not start")
	}
	return t, nil
}

// peerHandshakes is the number of mutual-TLS handshakes the target's peer (B) has served.
func peerHandshakes(t *target) float64 {
	if t.peer == nil {
		return -1
	}
	return scrape(t.peer.metrics, "tls_handshake_total", "")
}
