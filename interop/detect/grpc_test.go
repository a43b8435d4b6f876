package detect_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/internal/testnet"
	"github.com/sniffsplice/sniff/splice"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type detected struct {
	res  detect.Result
	conn net.Conn
	err  error
}

// acceptDetect accepts one connection from ln and runs d.Detect on it.
func acceptDetect(ln net.Listener, d *detect.Detector) <-chan detected {
	ch := make(chan detected, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- detected{err: err}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		res, conn, err := d.Detect(ctx, c)
		ch <- detected{res, conn, err}
	}()
	return ch
}

// healthCheck makes one grpc-go health check on cc and requires SERVING.
func healthCheck(t *testing.T, cc *grpc.ClientConn, service string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
}

// healthServer is a grpc.Server with the standard health service, SERVING
// for "" and "sniff".
func healthServer() *grpc.Server {
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("sniff", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	return gs
}

// grpcThroughDetect runs a grpc-go health check whose connection passes
// through d.Detect before reaching a real grpc.Server. dial is how the
// client reaches the detector (loopback TCP or a pipe).
func grpcThroughDetect(t *testing.T, d *detect.Detector, usePipe bool) detect.Result {
	t.Helper()
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	defer srv.Stop()

	var serverSide net.Conn
	var dialer func(context.Context, string) (net.Conn, error)
	var det <-chan detected
	if usePipe {
		c, s := net.Pipe()
		serverSide = s
		dialer = func(context.Context, string) (net.Conn, error) { return c, nil }
		ch := make(chan detected, 1)
		go func() {
			res, conn, err := d.Detect(context.Background(), serverSide)
			ch <- detected{res, conn, err}
		}()
		det = ch
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		dialer = func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
		}
		det = acceptDetect(ln, d)
	}

	cc, err := grpc.NewClient("passthrough:///detect-test",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dialer))
	require.NoError(t, err)
	defer cc.Close()

	type rpc struct {
		resp *healthpb.HealthCheckResponse
		err  error
	}
	rpcDone := make(chan rpc, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		r, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		rpcDone <- rpc{r, err}
	}()

	dd := testnet.Recv(t, det, "det")
	require.NoError(t, dd.err)
	ol := testnet.NewOneConnListener(dd.conn)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ol) }()

	r := testnet.Recv(t, rpcDone, "rpcDone")
	require.NoError(t, r.err, "the RPC must succeed through the detected connection")
	assert.Equal(t, healthpb.HealthCheckResponse_SERVING, r.resp.GetStatus())
	// A second RPC on the same connection: the server accepted the
	// connection as a normal one (a stray SETTINGS ACK would have killed
	// it with a connection error).
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	cc.Close()
	srv.Stop()
	testnet.Recv(t, served, "served")
	return dd.res
}

func TestGRPCActiveRealGRPCGo(t *testing.T) {
	for _, usePipe := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipe=%v", usePipe), func(t *testing.T) {
			d := &detect.Detector{GRPC: detect.GRPCActive, GRPCWait: 10 * time.Second}
			res := grpcThroughDetect(t, d, usePipe)
			assert.Equal(t, detect.GRPC, res.Protocol)
			assert.Equal(t, detect.ReasonMatched, res.Reason)
		})
	}
}

// grpc-go sends no HEADERS before the server's SETTINGS, so passive mode
// reports HTTP/2 after the wait; the connection is intact for the server.
func TestGRPCPassiveRealGRPCGoFallsBackToHTTP2(t *testing.T) {
	for _, usePipe := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipe=%v", usePipe), func(t *testing.T) {
			d := &detect.Detector{GRPC: detect.GRPCPassive, GRPCWait: 50 * time.Millisecond}
			res := grpcThroughDetect(t, d, usePipe)
			assert.Equal(t, detect.HTTP2, res.Protocol)
			assert.Equal(t, detect.ReasonMatched, res.Reason)
		})
	}
}

// proxyTo copies c to a new connection to addr and back, as a TCP proxy
// does, and closes both when either direction ends.
func proxyTo(c net.Conn, addr string) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	_, _ = splice.Join(context.Background(), c, up)
}

// echoTestService streams back one response of the request's payload for
// each request.
type echoTestService struct {
	testgrpc.UnimplementedTestServiceServer
}

func (echoTestService) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

// grpc-go bidirectional streaming with 1 MiB messages each way through
// active mode into a real grpc.Server, served directly and behind a
// copying proxy: flow control, large frames and the hand-off after the
// filter all carry the stream intact.
func TestGRPCActiveGRPCGoLargeStream(t *testing.T) {
	for _, mode := range []string{"serve", "proxy"} {
		t.Run(mode, func(t *testing.T) {
			srv := grpc.NewServer()
			testgrpc.RegisterTestServiceServer(srv, echoTestService{})
			defer srv.Stop()

			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer ln.Close()
			var backendAddr string
			if mode == "proxy" {
				backend, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				backendAddr = backend.Addr().String()
				go func() { _ = srv.Serve(backend) }()
			}
			d := &detect.Detector{GRPC: detect.GRPCActive, GRPCWait: 10 * time.Second}
			det := make(chan detected, 1)
			proxied := make(chan struct{})
			go func() {
				c, err := ln.Accept()
				if err != nil {
					det <- detected{err: err}
					close(proxied)
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				res, conn, err := d.Detect(ctx, c)
				det <- detected{res, conn, err}
				if err == nil && mode == "proxy" {
					proxyTo(conn, backendAddr)
				}
				close(proxied)
			}()

			cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(),
				grpc.WithTransportCredentials(insecure.NewCredentials()))
			require.NoError(t, err)
			defer cc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			stream, err := testgrpc.NewTestServiceClient(cc).FullDuplexCall(ctx)
			require.NoError(t, err)

			dd := testnet.Recv(t, det, "det")
			require.NoError(t, dd.err)
			assert.Equal(t, detect.GRPC, dd.res.Protocol)
			served := make(chan error, 1)
			if mode == "serve" {
				go func() { served <- srv.Serve(testnet.NewOneConnListener(dd.conn)) }()
			}

			for i := 0; i < 4; i++ {
				payload := bytes.Repeat([]byte{byte('a' + i)}, 1<<20)
				require.NoError(t, stream.Send(&testgrpc.StreamingOutputCallRequest{
					Payload: &testgrpc.Payload{Body: payload},
				}))
				resp, err := stream.Recv()
				require.NoError(t, err, "message %d", i)
				assert.True(t, bytes.Equal(payload, resp.GetPayload().GetBody()), "message %d echoed intact", i)
			}
			require.NoError(t, stream.CloseSend())
			_, err = stream.Recv()
			assert.ErrorIs(t, err, io.EOF)
			cc.Close()
			srv.Stop()
			if mode == "serve" {
				testnet.Recv(t, served, "served")
			}
			testnet.Recv(t, proxied, "proxied")
		})
	}
}

// TestMuxGRPCGo: a grpc-go client through a Mux whose Detector tells gRPC
// apart actively reaches the grpc-go server on the GRPC child; with no GRPC
// child, gRPC goes to the HTTP/2 child (a grpc-go server there serves it).
func TestMuxGRPCGo(t *testing.T) {
	for _, child := range []detect.Protocol{detect.GRPC, detect.HTTP2} {
		t.Run(string(child), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			var mu sync.Mutex
			var routed []detect.Protocol
			m := detect.NewMux(ln, &detect.Detector{GRPC: detect.GRPCActive}, detect.MuxConfig{
				OnConn: func(ev detect.MuxEvent) {
					if ev.Outcome == detect.MuxRouted {
						mu.Lock()
						routed = append(routed, ev.Result.Protocol)
						mu.Unlock()
					}
				},
			})
			l := m.Match(child)
			gs := healthServer()
			served := make(chan error, 1)
			go func() { served <- gs.Serve(l) }()
			muxed := make(chan error, 1)
			go func() { muxed <- m.Serve() }()

			cc, err := grpc.NewClient(m.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			require.NoError(t, err)
			for range 3 {
				healthCheck(t, cc, "sniff")
			}
			require.NoError(t, cc.Close())

			require.NoError(t, m.Close()) // waits for every connection's goroutine: all events are in
			assert.ErrorIs(t, testnet.Recv(t, muxed, "Serve to return"), detect.ErrMuxClosed)
			gs.Stop()
			testnet.Recv(t, served, "grpc Serve to return")
			mu.Lock()
			defer mu.Unlock()
			assert.Equal(t, []detect.Protocol{detect.GRPC}, routed)
		})
	}
}

// TestDetectUpstreamHTTP2ServerPrefaceIsNotAGreeting: grpc-go servers write
// their SETTINGS frame before reading the client preface. That is not a
// server-first greeting: a grpc-go client through a proxy that races the
// client against such a server is detected as HTTP/2 and its call works.
func TestDetectUpstreamHTTP2ServerPrefaceIsNotAGreeting(t *testing.T) {
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := healthServer()
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(gl) }()
	defer func() { gs.Stop(); testnet.Recv(t, done, "grpc Serve to return") }()

	results := make(chan detect.Result, 4)
	d := &detect.Detector{}
	proxy := testnet.Serve(t, func(c net.Conn) {
		up, err := net.DialTimeout("tcp", gl.Addr().String(), 10*time.Second)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		res, c2, up2, err := d.DetectUpstream(ctx, c, up)
		if err != nil {
			up.Close()
			return
		}
		results <- res
		_, _ = splice.Join(ctx, c2, up2)
	})

	cc, err := grpc.NewClient(proxy.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	healthCheck(t, cc, "")
	require.NoError(t, cc.Close())
	res := testnet.Recv(t, results, "the detection result")
	assert.Equal(t, detect.HTTP2, res.Protocol)
	assert.Equal(t, detect.ReasonMatched, res.Reason)
}
