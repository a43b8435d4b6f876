package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestProxyErrorStatus: a failed round trip is blamed on whoever failed. The client's body error
// is 400 even when the client's connection also closed; a client that went away (its request's
// context cancelled, as net/http does when the connection closes) is 499, whatever error the
// Transport reported first; timeouts are 504; anything else is the upstream's 502.
func TestProxyErrorStatus(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	upstream := errors.New("connection refused")
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want int
	}{
		{"upstream failed", context.Background(), upstream, http.StatusBadGateway},
		{"client body error", context.Background(), fmt.Errorf("wrapped: %w", clientBodyError{io.ErrUnexpectedEOF}), http.StatusBadRequest},
		{"client body error, client gone", cancelled, clientBodyError{io.ErrUnexpectedEOF}, http.StatusBadRequest},
		{"client gone, the Transport says cancelled", cancelled, context.Canceled, statusClientClosed},
		{"client gone, the Transport says something else", cancelled, upstream, statusClientClosed},
		{"timeout", context.Background(), fmt.Errorf("read: %w", os.ErrDeadlineExceeded), http.StatusGatewayTimeout},
		{"deadline", context.Background(), context.DeadlineExceeded, http.StatusGatewayTimeout},
		{"request deadline passed (not cancelled)", expired(t), context.DeadlineExceeded, http.StatusGatewayTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequestWithContext(tc.ctx, http.MethodPost, "http://app/", nil)
			w := httptest.NewRecorder()
			proxyError(w, r, tc.err)
			require.Equal(t, tc.want, w.Code)
		})
	}
}

// expired is a context whose deadline has passed.
func expired(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	t.Cleanup(cancel)
	<-ctx.Done()
	return ctx
}
