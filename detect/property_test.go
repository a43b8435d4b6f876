package detect_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sniffsplice/sniff/detect"
)

type seed struct {
	name   string
	in     []byte
	proto  detect.Protocol
	reason detect.Reason
}

func pgStartup(params ...string) []byte {
	var body []byte
	for _, p := range params {
		body = append(body, p...)
		body = append(body, 0)
	}
	body = append(body, 0)
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(body)))
	b = binary.BigEndian.AppendUint32(b, 3<<16)
	return append(b, body...)
}

// seeds are the inputs of the property test, with the result every
// fragmentation of them must give when the client closes after sending.
func seeds(t testing.TB) []seed {
	hello := goClientHello(t, "api.example.test", []string{"h2", "http/1.1"})
	big := bytes.Repeat([]byte("0123456789abcdef"), 1280) // 20 KiB
	h2 := append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100)
	v2 := append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0x21, 0x11, 0, 12, 127, 0, 0, 1, 127, 0, 0, 2, 0x1f, 0x90, 0x00, 0x50)
	return []seed{
		{"http1-get", []byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), detect.HTTP1, detect.ReasonMatched},
		{"http1-post-body", append([]byte("POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 20480\r\n\r\n"), big...), detect.HTTP1, detect.ReasonMatched},
		{"http1-webdav", []byte("PROPFIND /dav/ HTTP/1.1\r\nDepth: 1\r\n\r\n"), detect.HTTP1, detect.ReasonMatched},
		{"http2-preface", h2, detect.HTTP2, detect.ReasonMatched},
		{"tls-go-hello", hello, detect.TLS, detect.ReasonMatched},
		{"tls-hello-100-byte-records", refragment(hello, 100), detect.TLS, detect.ReasonMatched},
		{"ssh", []byte("SSH-2.0-OpenSSH_9.6p1 Debian\r\n"), detect.SSH, detect.ReasonMatched},
		{"proxy-v1", []byte("PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\nGET / HTTP/1.1\r\n\r\n"), detect.PROXY, detect.ReasonMatched},
		{"proxy-v2", v2, detect.PROXY, detect.ReasonMatched},
		{"pg-ssl", []byte{0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f}, detect.PostgreSQL, detect.ReasonMatched},
		{"pg-startup", pgStartup("user", "alice", "database", "db"), detect.PostgreSQL, detect.ReasonMatched},
		{"fourteen-letters", []byte("ABCDEFGHIJKLMN / HTTP/1.1\r\n\r\n"), detect.Unknown, detect.ReasonNoMatch},
		{"binary", append([]byte{0xff, 0x00, 0x13}, big...), detect.Unknown, detect.ReasonNoMatch},
		{"http1-partial", []byte("GET /index.html HT"), detect.Unknown, detect.ReasonClosed},
		{"tls-partial", hello[:700], detect.Unknown, detect.ReasonClosed},
		{"empty", nil, detect.Unknown, detect.ReasonClosed},
	}
}

// fragmentations returns ways to cut n bytes into writes.
func fragmentations(n int) map[string][]int {
	f := map[string][]int{"all-at-once": {n}}
	one := make([]int, n)
	for i := range one {
		one[i] = 1
	}
	f["one-byte"] = one
	for s := uint64(1); s <= 3; s++ {
		r := rand.New(rand.NewPCG(s, 42))
		var cuts []int
		for left := n; left > 0; {
			k := min(left, 1+r.IntN(64))
			cuts = append(cuts, k)
			left -= k
		}
		f[fmt.Sprintf("random-%d", s)] = cuts
	}
	return f
}

type transport struct {
	name string
	pair func(t testing.TB) (client, server net.Conn)
	// closeWrite ends the client's sending side.
	closeWrite func(c net.Conn) error
}

func transports() []transport {
	ts := []transport{{
		name: "tcp",
		pair: func(t testing.TB) (net.Conn, net.Conn) { c, s := tcpPair(t); return c, s },
		closeWrite: func(c net.Conn) error {
			return c.(*net.TCPConn).CloseWrite()
		},
	}, {
		name:       "pipe",
		pair:       func(testing.TB) (net.Conn, net.Conn) { return net.Pipe() },
		closeWrite: func(c net.Conn) error { return c.Close() },
	}}
	return ts
}

// TestPropertyBytesPreserved: for every seed, every fragmentation and both
// paths (MSG_PEEK over loopback TCP, replay over net.Pipe), the bytes read
// from the returned conn equal the bytes sent and the result is the same.
func TestPropertyBytesPreserved(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	d := &detect.Detector{Matchers: allMatchers()}
	for _, sd := range seeds(t) {
		for _, tr := range transports() {
			for fname, cuts := range fragmentations(len(sd.in)) {
				t.Run(sd.name+"/"+tr.name+"/"+fname, func(t *testing.T) {
					client, server := tr.pair(t)
					defer client.Close()
					sent := make(chan error, 1)
					go func() {
						in := sd.in
						for _, k := range cuts {
							if _, err := client.Write(in[:k]); err != nil {
								sent <- err
								return
							}
							in = in[k:]
						}
						sent <- tr.closeWrite(client)
					}()
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					res, conn, err := d.Detect(ctx, server)
					require.NoError(t, err)
					defer conn.Close()
					assert.Equal(t, sd.proto, res.Protocol)
					assert.Equal(t, sd.reason, res.Reason, "reason %v", res.Reason)
					if tr.name == "tcp" && runtime.GOOS == "linux" {
						assert.Same(t, server, conn, "MSG_PEEK path must return the very *net.TCPConn")
					}
					_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second)) // net.Pipe refuses once the peer closed
					got, err := io.ReadAll(bounded(conn))
					require.NoError(t, err)
					require.NoError(t, recv(t, sent, "sent"))
					assert.True(t, bytes.Equal(sd.in, got), "read %d bytes, sent %d", len(got), len(sd.in))
				})
			}
		}
	}
}
