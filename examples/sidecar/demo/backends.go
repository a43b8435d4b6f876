package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sniffsplice/sniff/accept"
	"github.com/sniffsplice/sniff/examples/sidecar/proxy"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// backends are the demo's applications, all on loopback with ephemeral ports.
type backends struct {
	http1, h2c, grpc, smtp, redis, memcache net.Listener

	g    errgroup.Group
	stop []func()
}

func startBackends() (*backends, error) {
	b := &backends{}
	for _, l := range []*net.Listener{&b.http1, &b.h2c, &b.grpc, &b.smtp, &b.redis, &b.memcache} {
		var err error
		if *l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			b.close()
			return nil, err
		}
	}

	// HTTP/1.1 and h2c (prior knowledge) through net/http.
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "hello %s over %s, you sent %d bytes, from %s", r.URL.Path[1:], r.Proto, len(body), r.Header.Get(proxy.ClientIDHeader))
	})
	h1 := &http.Server{Handler: hello, ReadHeaderTimeout: 10 * time.Second}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	h2 := &http.Server{Handler: hello, Protocols: &protos, ReadHeaderTimeout: 10 * time.Second}
	b.serveHTTP(h1, b.http1)
	b.serveHTTP(h2, b.h2c)

	// gRPC: grpc-go's health service.
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("demo", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	b.g.Go(func() error { return gs.Serve(b.grpc) })
	b.stop = append(b.stop, gs.Stop)

	// A server that speaks first (SMTP-style greeting), a Redis-style
	// request/response protocol and a Memcache-style one.
	b.serveTCP(b.smtp, serveSMTP)
	b.serveTCP(b.redis, serveRedis)
	b.serveTCP(b.memcache, serveMemcache)
	return b, nil
}

func (b *backends) serveHTTP(s *http.Server, l net.Listener) {
	b.g.Go(func() error {
		if err := s.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	b.stop = append(b.stop, func() { s.Close() })
}

// serveTCP runs handle for each connection; close stops the listener and
// closes the connections still open.
func (b *backends) serveTCP(l net.Listener, handle func(net.Conn)) {
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	var wg sync.WaitGroup
	b.g.Go(func() error {
		defer wg.Wait()
		// Until close closes l (the error is then net.ErrClosed: not a failure of the demo).
		accept.Serve(context.Background(), l, func(c net.Conn) {
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				handle(c)
			}()
		})
		return nil
	})
	b.stop = append(b.stop, func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
}

func (b *backends) close() error {
	for _, f := range b.stop {
		f()
	}
	for _, l := range []net.Listener{b.http1, b.h2c, b.grpc, b.smtp, b.redis, b.memcache} {
		if l != nil {
			l.Close()
		}
	}
	return b.g.Wait()
}

// serveSMTP greets first, then answers EHLO and QUIT.
func serveSMTP(c net.Conn) {
	r := bufio.NewReader(c)
	fmt.Fprintf(c, "220 smtp.demo.test ESMTP sniff demo\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			fmt.Fprintf(c, "250-smtp.demo.test greets %s\r\n250 8BITMIME\r\n", strings.TrimSpace(line[4:]))
		case cmd == "QUIT":
			fmt.Fprintf(c, "221 bye\r\n")
			return
		default:
			fmt.Fprintf(c, "502 not implemented\r\n")
		}
	}
}

// serveRedis speaks enough RESP for PING, SET and GET.
func serveRedis(c net.Conn) {
	r := bufio.NewReader(c)
	data := map[string]string{}
	for {
		args, err := readRESP(r)
		if err != nil {
			return
		}
		switch strings.ToUpper(args[0]) {
		case "PING":
			io.WriteString(c, "+PONG\r\n")
		case "SET":
			if len(args) != 3 {
				io.WriteString(c, "-ERR wrong number of arguments\r\n")
				continue
			}
			data[args[1]] = args[2]
			io.WriteString(c, "+OK\r\n")
		case "GET":
			v, ok := data[args[1]]
			if !ok {
				io.WriteString(c, "$-1\r\n")
				continue
			}
			fmt.Fprintf(c, "$%d\r\n%s\r\n", len(v), v)
		default:
			io.WriteString(c, "-ERR unknown command\r\n")
		}
	}
}

func readRESP(r *bufio.Reader) ([]string, error) {
	var n int
	if _, err := fmt.Fscanf(r, "*%d\r\n", &n); err != nil || n < 1 || n > 16 {
		return nil, fmt.Errorf("bad RESP array: %v", err)
	}
	args := make([]string, n)
	for i := range args {
		var l int
		if _, err := fmt.Fscanf(r, "$%d\r\n", &l); err != nil || l < 0 || l > 1<<20 {
			return nil, fmt.Errorf("bad RESP bulk string: %v", err)
		}
		buf := make([]byte, l+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		args[i] = string(buf[:l])
	}
	return args, nil
}

func respCommand(args ...string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&sb, "$%d\r\n%s\r\n", len(a), a)
	}
	return sb.String()
}

// serveMemcache answers "get KEY" with a fixed value, as a cache would.
func serveMemcache(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "get" {
			v := "cached:" + f[1]
			fmt.Fprintf(c, "VALUE %s 0 %d\r\n%s\r\nEND\r\n", f[1], len(v), v)
			continue
		}
		io.WriteString(c, "ERROR\r\n")
	}
}

// grpcHealth runs one health check over conn-level dialer dial.
func grpcHealth(ctx context.Context, target string, dial func(context.Context, string) (net.Conn, error)) (string, error) {
	cc, err := grpc.NewClient("passthrough:///"+target,
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dial), grpc.WithAuthority("grpc.demo.test"))
	if err != nil {
		return "", err
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "demo"})
	if err != nil {
		return "", err
	}
	return resp.GetStatus().String(), nil
}
