package detect_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sniffsplice/sniff/detect"
)

// FuzzDetectUpstream checks DetectUpstream's promise that nothing from either side is lost or
// reordered, whoever speaks first: both peers write their bytes in chunks of the given size and
// half-close, and everything read from the two returned connections must equal what was sent. It
// runs over loopback TCP (the MSG_PEEK path) or net.Pipe (the replay path).
func FuzzDetectUpstream(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\n\r\n"), true, uint8(0))
	f.Add([]byte("EHLO x\r\n"), []byte("220 mail ESMTP\r\n"), false, uint8(1))
	f.Add([]byte("get k\r\n"), []byte(""), true, uint8(3))
	f.Add([]byte(""), []byte("\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64"), true, uint8(2))
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), []byte("\x00\x00\x00\x04\x00\x00\x00\x00\x00"), false, uint8(5))
	f.Add([]byte("\x16\x03\x01\x00\x05hello"), []byte("\x4a\x00\x00\x00\x0a5.5.5"), true, uint8(1))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	tcpPair := func(t *testing.T) (net.Conn, net.Conn) {
		a, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		b, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		// Reset on close: no TIME_WAIT, so tens of thousands of iterations do not run out of ports.
		_ = a.(*net.TCPConn).SetLinger(0)
		_ = b.(*net.TCPConn).SetLinger(0)
		return a, b
	}
	closeWrite := func(c net.Conn) {
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = c.Close()
		}
	}

	f.Fuzz(func(t *testing.T, clientBytes, serverBytes []byte, useTCP bool, chunk uint8) {
		if len(clientBytes) > 4096 || len(serverBytes) > 4096 {
			return
		}
		var cli, cliProxy, upProxy, srv net.Conn
		if useTCP {
			cli, cliProxy = tcpPair(t)
			upProxy, srv = tcpPair(t)
		} else {
			cli, cliProxy = net.Pipe()
			upProxy, srv = net.Pipe()
		}
		defer cli.Close()
		defer srv.Close()
		deadline := time.Now().Add(10 * time.Second) // a hang fails the input instead of stalling
		for _, c := range []net.Conn{cli, cliProxy, upProxy, srv} {
			_ = c.SetDeadline(deadline)
		}
		step := int(chunk%16) + 1
		var wg sync.WaitGroup
		send := func(c net.Conn, b []byte) {
			defer wg.Done()
			for i := 0; i < len(b); i += step {
				if _, err := c.Write(b[i:min(i+step, len(b))]); err != nil {
					return
				}
			}
			closeWrite(c)
		}
		var drainErr [2]error
		drain := func(c net.Conn, into *[]byte, err *error) {
			defer wg.Done()
			*into, *err = io.ReadAll(c)
		}
		wg.Add(2)
		go send(cli, clientBytes)
		go send(srv, serverBytes)

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, c, u, err := (&detect.Detector{Timeout: 5 * time.Second}).DetectUpstream(ctx, cliProxy, upProxy)
		if err != nil {
			t.Fatalf("DetectUpstream: %v", err)
		}
		_ = c.SetDeadline(deadline) // DetectUpstream clears read deadlines
		_ = u.SetDeadline(deadline)
		defer c.Close()
		defer u.Close()
		var gotClient, gotServer []byte
		wg.Add(2)
		go drain(c, &gotClient, &drainErr[0])
		go drain(u, &gotServer, &drainErr[1])
		wg.Wait()
		if drainErr[0] != nil || drainErr[1] != nil {
			t.Fatalf("reading after DetectUpstream: %v, %v", drainErr[0], drainErr[1])
		}
		if !bytes.Equal(gotClient, clientBytes) {
			t.Fatalf("client bytes: got %q, sent %q", gotClient, clientBytes)
		}
		if !bytes.Equal(gotServer, serverBytes) {
			t.Fatalf("server bytes: got %q, sent %q", gotServer, serverBytes)
		}
	})
}
