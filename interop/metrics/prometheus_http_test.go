package metrics_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/sniffsplice/sniff/internal/testnet"
	"github.com/sniffsplice/sniff/metrics"
	sniffprom "github.com/sniffsplice/sniff/metrics/prometheus"
	"github.com/sniffsplice/sniff/opaque"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestHTTPMetricsExposition drives real HTTP/1 and gRPC traffic through
// the middleware and the RoundTripper and checks what Prometheus scrapes.
func TestHTTPMetricsExposition(t *testing.T) {
	reg := metrics.New(metrics.Config{})
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	defer gs.Stop()
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	root := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			gs.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
	addr := testnet.ServeHTTP(t, reg.HTTPHandler(root, metrics.HTTPOptions{Authorities: []string{"svc.test"}}))

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: reg.RoundTripper(tr, metrics.HTTPOptions{Direction: opaque.Outbound, MaxAuthorities: -1})}
	get := func(path string, code int) {
		req, err := http.NewRequest("GET", "http://"+addr+path, nil)
		require.NoError(t, err)
		req.Host = "svc.test"
		resp, err := client.Do(req)
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, code, resp.StatusCode)
	}
	get("/ok", 200)
	get("/ok", 200)
	get("/fail", 503)

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("svc.test"))
	require.NoError(t, err)
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "missing"})
	require.Equal(t, codes.NotFound, status.Code(err))

	c := sniffprom.NewCollector(reg, sniffprom.Options{})
	require.Eventually(t, func() bool {
		return testutil.CollectAndCount(c, "response_total") == 5 // 3 inbound (200, 503, gRPC) + 2 outbound
	}, 10*time.Second, time.Millisecond)

	want := `
# HELP request_total Total count of HTTP requests.
# TYPE request_total counter
request_total{authority="svc.test",direction="inbound",route=""} 4
request_total{authority="",direction="outbound",route=""} 3
# HELP response_total Total count of HTTP responses, by classification, status code and gRPC status.
# TYPE response_total counter
response_total{authority="svc.test",classification="success",direction="inbound",grpc_status="",route="",status_code="200"} 2
response_total{authority="svc.test",classification="failure",direction="inbound",grpc_status="",route="",status_code="503"} 1
response_total{authority="svc.test",classification="failure",direction="inbound",grpc_status="5",route="",status_code="200"} 1
response_total{authority="",classification="success",direction="outbound",grpc_status="",route="",status_code="200"} 2
response_total{authority="",classification="failure",direction="outbound",grpc_status="",route="",status_code="503"} 1
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want), "request_total", "response_total"))
	assert.Equal(t, 5, testutil.CollectAndCount(c, "response_latency_seconds"))

	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	assert.Empty(t, problems, fmt.Sprint(problems))
}
