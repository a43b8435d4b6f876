package detect_test

import (
	"fmt"
	"io"
	"net"
	"time"

	"github.com/sniffsplice/sniff/detect"
)

// ExampleWaiter_Park holds an idle connection without a goroutine, detached
// to its bare descriptor (at once here; a second by default), and serves it
// again when its client speaks.
func ExampleWaiter_Park() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		panic(err)
	}

	w := detect.Waiter{DetachAfter: -1}
	defer w.Close()
	done := make(chan string)
	w.Park(server, time.Minute, func(c net.Conn, err error) {
		if err != nil {
			done <- err.Error()
			return
		}
		defer c.Close()
		b := make([]byte, 5)
		io.ReadFull(c, b)
		done <- string(b)
	})
	for w.Stats().Detached == 0 { // for the example's sake: the wait is detached
		time.Sleep(time.Millisecond)
	}
	client.Write([]byte("hello"))
	fmt.Println(<-done, w.Stats().Detached)
	// Output: hello 1
}
