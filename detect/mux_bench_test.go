package detect_test

import (
	"io"
	"net"
	"testing"

	"github.com/sniffsplice/sniff/detect"
)

// BenchmarkMuxAccept measures one connection's way from the client's dial to a server's Accept with
// its first bytes read, directly from a net.Listener ("direct") and through a Mux that detects
// HTTP/1 and routes it to a child listener ("mux"), in one run:
//
//	go test -run '^$' -bench BenchmarkMuxAccept -benchmem ./detect/
func BenchmarkMuxAccept(b *testing.B) {
	req := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	run := func(b *testing.B, l net.Listener) {
		accepted := make(chan struct{})
		go func() {
			buf := make([]byte, len(req))
			for {
				c, err := l.Accept()
				if err != nil {
					close(accepted)
					return
				}
				_, _ = io.ReadFull(c, buf)
				c.Close()
				accepted <- struct{}{}
			}
		}()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Write(req); err != nil {
				b.Fatal(err)
			}
			<-accepted
			c.Close()
		}
		b.StopTimer()
		l.Close()
		<-accepted
	}
	b.Run("direct", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		run(b, ln)
	})
	b.Run("mux", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		m := detect.NewMux(ln, nil)
		httpL := m.Match(detect.HTTP1, detect.HTTP2)
		done := make(chan error, 1)
		go func() { done <- m.Serve() }()
		run(b, httpL)
		m.Close()
		<-done
	})
}
