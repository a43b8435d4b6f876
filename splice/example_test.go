package splice_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/splice"
)

// A proxy's connection handler: accept, detect the protocol, dial the
// upstream for it, and join the two connections.
func Example() {
	ctx := context.Background()

	// An upstream that answers every request with a fixed response.
	up, _ := net.Listen("tcp", "127.0.0.1:0")
	defer up.Close()
	go func() {
		c, err := up.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.ReadAll(c) // the whole request, until the client's half-close
		io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
	}()

	// The proxy.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	done := make(chan string)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		var d detect.Detector           // HTTP/1, HTTP/2 and TLS, 10 s timeout
		res, c, err := d.Detect(ctx, c) // c still holds every byte the client sent
		if err != nil {
			c.Close()
			return
		}
		upstream, err := net.Dial("tcp", up.Addr().String()) // chosen by res.Protocol in a real proxy
		if err != nil {
			c.Close()
			return
		}
		var j splice.Joiner // zero value: no timeouts, splice on
		st, err := j.Join(ctx, c, upstream, nil)
		done <- fmt.Sprintf("%s: %d bytes up, %d bytes down, first %q ended with %s, err=%v",
			res.Protocol, st.AToB, st.BToA, st.First, st.End, err)
	}()

	// A client that sends a request, half-closes and reads the response.
	c, _ := net.Dial("tcp", ln.Addr().String())
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: example\r\n\r\n")
	c.(*net.TCPConn).CloseWrite()
	resp, _ := io.ReadAll(c)
	c.Close()
	fmt.Printf("client got %q\n", resp)
	fmt.Println(<-done)
	// Output:
	// client got "HTTP/1.1 204 No Content\r\n\r\n"
	// HTTP/1: 33 bytes up, 27 bytes down, first "a" ended with eof, err=<nil>
}

// Errno turns the error of a join into a metric label.
func ExampleErrno() {
	a, b := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := splice.Join(ctx, a, b)
	fmt.Printf("%q %q\n", splice.Errno(err), splice.Errno(nil))
	// Output: "other" ""
}

// A TCP relay on a Loop: one goroutine accepts, the loop dials the upstream
// and moves the bytes; no goroutine is started per connection.
func ExampleLoop() {
	// An upstream that reads the whole request and answers.
	up, _ := net.Listen("tcp", "127.0.0.1:0")
	defer up.Close()
	go func() {
		c, err := up.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.ReadAll(c)
		io.WriteString(c, "pong")
	}()
	upstream := netip.MustParseAddrPort(up.Addr().String())

	var l splice.Loop // zero value: GOMAXPROCS workers, no timeouts, splice on
	defer l.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	done := make(chan splice.Stats, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if err := l.StartDial(context.Background(), c, upstream, nil, func(st splice.Stats) { done <- st }); err != nil {
			c.Close()
		}
	}()

	c, _ := net.Dial("tcp", ln.Addr().String())
	io.WriteString(c, "ping")
	c.(*net.TCPConn).CloseWrite()
	resp, _ := io.ReadAll(c)
	c.Close()
	st := <-done
	fmt.Printf("client got %q; %d bytes up, %d down, first %q ended with %s, err=%v\n",
		resp, st.AToB, st.BToA, st.First, st.End, st.Err)
	// Output:
	// client got "pong"; 4 bytes up, 4 down, first "a" ended with eof, err=<nil>
}

// ExampleLoop_ServeDial serves a listener from the loop itself: on Linux
// its workers accept, connect the upstream and join, with no goroutine and
// no net.Conn per connection.
func ExampleLoop_ServeDial() {
	// An upstream that reads the whole request and answers.
	up, _ := net.Listen("tcp", "127.0.0.1:0")
	defer up.Close()
	go func() {
		c, err := up.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.ReadAll(c)
		io.WriteString(c, "pong")
	}()
	upstream := netip.MustParseAddrPort(up.Addr().String())

	var l splice.Loop
	defer l.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan splice.Stats, 1)
	served := make(chan error, 1)
	go func() {
		served <- l.ServeDial(ctx, ln.(*net.TCPListener), upstream, nil, func(st splice.Stats) { done <- st })
	}()

	c, _ := net.Dial("tcp", ln.Addr().String())
	io.WriteString(c, "ping")
	c.(*net.TCPConn).CloseWrite()
	resp, _ := io.ReadAll(c)
	c.Close()
	st := <-done
	cancel() // stops accepting and closes the listening socket
	fmt.Printf("client got %q; %d bytes up, %d down; ServeDial returned %v\n", resp, st.AToB, st.BToA, <-served)
	// Output:
	// client got "pong"; 4 bytes up, 4 down; ServeDial returned context canceled
}
