package metrics_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/http"
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
		return reg.Snapshot().RequestCount(metrics.Inbound) == 5 &&
			reg.Snapshot().ResponseCount(metrics.Inbound, 200, "0")+reg.Snapshot().ResponseCount(metrics.Inbound, 200, "5") == 5
	}, 10*time.Second, time.Millisecond)
	snap := reg.Snapshot()
	require.Len(t, snap.Responses, 2)
	ok, notFound := snap.Responses[0], snap.Responses[1]
	assert.Equal(t, "/grpc.health.v1.Health/Check", ok.Route)
	assert.Equal(t, "0", ok.GRPCStatus)
	assert.Equal(t, "success", ok.Classification)
	assert.Equal(t, uint64(3), ok.Count)
	assert.Equal(t, "5", notFound.GRPCStatus, "NotFound is grpc-status 5")
	assert.Equal(t, "failure", notFound.Classification)
	assert.Equal(t, uint64(2), notFound.Count)
	assert.Equal(t, 200, notFound.StatusCode)
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
	client := &http.Client{Transport: reg.RoundTripper(tr, metrics.HTTPOptions{Direction: metrics.Outbound})}

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
	assert.Equal(t, uint64(3), snap.RequestCount(metrics.Outbound))
	assert.Equal(t, uint64(1), snap.ResponseCount(metrics.Outbound, 200, "0"))
	assert.Equal(t, uint64(2), snap.ResponseCount(metrics.Outbound, 200, "5"))
	for _, r := range snap.Responses {
		assert.Equal(t, r.GRPCStatus != "0", r.Classification == "failure", "%+v", r)
	}
}
