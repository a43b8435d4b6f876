package metrics_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sniffsplice/sniff/internal/testnet"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/opaque"
)

func healthServer() *grpc.Server {
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer()) // "" is SERVING, any other service NotFound
	return gs
}

func TestHTTPHandlerGRPCStatus(t *testing.T) {
	reg := metrics.New(metrics.Config{})
	gs := healthServer()
	defer gs.Stop()
	addr := testnet.ServeHTTP(t, reg.HTTPHandler(gs, metrics.HTTPOptions{
		Route: func(r *http.Request) string { return r.URL.Path }, // gRPC method names are bounded
	}))

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{})
		require.NoError(t, err)
	}
	for range 2 {
		_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"})
		require.Equal(t, codes.NotFound, status.Code(err))
	}
	require.Eventually(t, func() bool {
		return requestCount(reg.Snapshot(), opaque.Inbound) == 5 &&
			responseCount(reg.Snapshot(), opaque.Inbound, 200, "0")+responseCount(reg.Snapshot(), opaque.Inbound, 200, "5") == 5
	}, 10*time.Second, time.Millisecond)
	// Labels: direction, authority, route, classification, status_code, grpc_status; NotFound is
	// grpc-status 5, a failure.
	f, _ := reg.Snapshot().Family("response_total")
	require.Len(t, f.Series, 2)
	notFound, ok := f.Series[0], f.Series[1] // sorted: failure before success
	assert.Equal(t, []string{"/grpc.health.v1.Health/Check", "failure", "200", "5"}, notFound.Labels[2:])
	assert.Equal(t, 2.0, notFound.Value)
	assert.Equal(t, []string{"/grpc.health.v1.Health/Check", "success", "200", "0"}, ok.Labels[2:])
	assert.Equal(t, 3.0, ok.Value)
}

// TestRoundTripperGRPCTrailers sends a hand-built gRPC request over h2c
// with net/http and reads grpc-status from the response trailers.
func TestRoundTripperGRPCTrailers(t *testing.T) {
	reg := metrics.New(metrics.Config{})
	gs := healthServer()
	defer gs.Stop()
	addr := testnet.ServeHTTP(t, gs)

	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: reg.RoundTripper(tr, metrics.HTTPOptions{Direction: opaque.Outbound})}

	call := func(service string) string {
		msg, err := proto.Marshal(&healthpb.HealthCheckRequest{Service: service})
		require.NoError(t, err)
		body := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
		body = append(body, msg...)
		req, err := http.NewRequest("POST", "http://"+addr+"/grpc.health.v1.Health/Check", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("TE", "trailers")
		resp, err := client.Do(req)
		require.NoError(t, err)
		_, err = io.Copy(io.Discard, resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, 200, resp.StatusCode)
		return resp.Trailer.Get("Grpc-Status")
	}
	require.Equal(t, "0", call(""))
	require.Equal(t, "5", call("no.such.Service"))
	require.Equal(t, "5", call("no.such.Service"))

	snap := reg.Snapshot()
	assert.Equal(t, uint64(3), requestCount(snap, opaque.Outbound))
	assert.Equal(t, uint64(1), responseCount(snap, opaque.Outbound, 200, "0"))
	assert.Equal(t, uint64(2), responseCount(snap, opaque.Outbound, 200, "5"))
	assert.Equal(t, 2.0, snap.Value("response_total", "grpc_status", "5", "classification", "failure"))
	assert.Equal(t, 1.0, snap.Value("response_total", "grpc_status", "0", "classification", "success"))
}

// requestCount reads request_total of one direction from a snapshot.
func requestCount(s metrics.Snapshot, dir opaque.Direction) uint64 {
	return uint64(s.Value("request_total", "direction", dir.String()))
}

// responseCount reads response_total of one direction, status code and grpc-status from a
// snapshot, summed over authorities and routes.
func responseCount(s metrics.Snapshot, dir opaque.Direction, status int, grpcStatus string) uint64 {
	return uint64(s.Value("response_total", "direction", dir.String(), "status_code", strconv.Itoa(status),
		"grpc_status", grpcStatus))
}
